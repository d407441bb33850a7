"""The micro-batcher: texts of requests that arrive together go through the model in one forward pass.

The first request of a batch waits at most ``max_wait`` seconds for others; a
batch closes earlier when it holds ``max_batch`` texts. While the model scores
one batch (on its own thread, so the server keeps reading requests), the next
one fills up: under load the batches grow without any request waiting longer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Answer = Callable[[list[str]], list[Any]]  # texts -> one answer per text, in order


class MicroBatcher:
    def __init__(self, answer: Answer, max_batch: int, max_wait: float,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.answer, self.max_batch, self.max_wait, self.on_batch = answer, max_batch, max_wait, on_batch
        self.queue: asyncio.Queue | None = None
        self.carried: tuple[list[str], asyncio.Future] | None = None  # a request that did not fit the last batch
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="tk-serve-model")  # one model, one caller
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """After the server has answered every request it received (uvicorn waits for them first)."""
        if self.task is not None:
            self.task.cancel()
        self.model_thread.shutdown(wait=True)

    async def predict(self, texts: list[str]) -> list[Any]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, future))
        return await future

    async def _next(self, timeout: float | None):
        if self.carried is not None:
            item, self.carried = self.carried, None
            return item
        if timeout is None:
            return await self.queue.get()
        if timeout <= 0:
            return self.queue.get_nowait()  # what has already arrived still joins
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._next(None)]
            size = len(batch[0][0])
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                try:
                    item = await self._next(deadline - loop.time())
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                if size + len(item[0]) > self.max_batch:
                    self.carried = item  # it opens the next batch, so no batch exceeds max_batch by joining
                    break
                batch.append(item)
                size += len(item[0])
            await self._score(loop, [item for item in batch if not item[1].cancelled()])

    async def _score(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[list[str], asyncio.Future]]) -> None:
        texts = [text for item in batch for text in item[0]]
        if not texts:
            return
        if self.on_batch is not None:
            self.on_batch(len(texts))
        try:
            answers = await loop.run_in_executor(self.model_thread, self.answer, texts)
        except Exception as error:  # a bug in scoring: its request gets a 500, the server stays up
            if len(batch) > 1:  # one request's text must not fail the others batched with it: each on its own
                for item in batch:
                    await self._score(loop, [item])
                return
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        start = 0
        for request_texts, future in batch:
            if not future.done():
                future.set_result(answers[start:start + len(request_texts)])
            start += len(request_texts)
