"""MicroBatcher with a FakeEngine: grouping, ordering, isolation of failures, backpressure, shutdown."""

from __future__ import annotations

import asyncio

import pytest
from PIL import Image

from healer_media.errors import Busy
from inference_service.batcher import BatchedResult, BatcherFull, BatcherStopped, MicroBatcher
from inference_service.inference import Inference
from tests.fakes import FakeEngine, FakeEngineError, image_p_yes

pytestmark = pytest.mark.timeout(30)


def _image(i: int) -> Image.Image:
    return Image.new("RGB", (8 + i, 8), (i % 256, 0, 0))


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_one_batch_and_get_their_own_results() -> None:
    async def main() -> tuple[list[BatchedResult], FakeEngine]:
        engine = FakeEngine(delay_s=0.01)
        batcher = MicroBatcher(engine, max_batch_size=8, window_ms=50, max_queue=64)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(_image(i), explain=False) for i in range(8)))
        await batcher.stop()
        return results, engine

    results, engine = run(main())
    assert engine.batch_sizes == [8]
    for i, got in enumerate(results):
        assert got.result.p_yes == image_p_yes(_image(i))
        assert got.batch_size == 8 and got.queue_ms >= 0
    assert {c.thread.split("_")[0] for c in engine.calls} == {"engine"}  # not the event loop's thread


def test_max_batch_size_splits_and_window_zero_does_not_wait() -> None:
    async def main() -> FakeEngine:
        engine = FakeEngine(delay_s=0.02)
        batcher = MicroBatcher(engine, max_batch_size=4, window_ms=0, max_queue=64)
        await batcher.start()
        await asyncio.gather(*(batcher.submit(_image(i), explain=False) for i in range(10)))
        await batcher.stop()
        return engine

    engine = run(main())
    assert sum(engine.batch_sizes) == 10 and max(engine.batch_sizes) <= 4


def test_batching_off_runs_one_image_per_call() -> None:
    async def main() -> FakeEngine:
        engine = FakeEngine()
        batcher = MicroBatcher(engine, max_batch_size=1, window_ms=10, max_queue=64)
        await batcher.start()
        await asyncio.gather(*(batcher.submit(_image(i), explain=False) for i in range(5)))
        await batcher.stop()
        return engine

    assert run(main()).batch_sizes == [1] * 5


def test_groups_by_explain_flag() -> None:
    async def main() -> tuple[list[BatchedResult], FakeEngine]:
        engine = FakeEngine(delay_s=0.01)
        batcher = MicroBatcher(engine, max_batch_size=8, window_ms=30, max_queue=64)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(_image(i), explain=i % 2 == 0) for i in range(6)))
        await batcher.stop()
        return results, engine

    results, engine = run(main())
    assert sorted((c.batch_size, c.explain) for c in engine.calls) == [(3, False), (3, True)]
    for i, got in enumerate(results):
        assert bool(got.result.explanation) == (i % 2 == 0)


def test_one_bad_image_never_fails_the_others() -> None:
    bad = _image(3)

    async def main() -> tuple[list[BatchedResult | BaseException], FakeEngine]:
        engine = FakeEngine(fail_on=lambda im: im.size == bad.size)
        batcher = MicroBatcher(engine, max_batch_size=8, window_ms=30, max_queue=64)
        await batcher.start()
        results = await asyncio.gather(
            *(batcher.submit(_image(i), explain=False) for i in range(5)), return_exceptions=True
        )
        await batcher.stop()
        return results, engine

    results, engine = run(main())
    assert isinstance(results[3], FakeEngineError)
    for i in (0, 1, 2, 4):
        got = results[i]
        assert isinstance(got, BatchedResult) and got.result.p_yes == image_p_yes(_image(i))
        assert got.batch_size == 1  # came from the one-by-one retry
    assert engine.batch_sizes == [5, 1, 1, 1, 1, 1]


def test_backpressure_when_queue_is_full() -> None:
    async def main() -> None:
        engine = FakeEngine(delay_s=0.2)
        batcher = MicroBatcher(engine, max_batch_size=1, window_ms=0, max_queue=2)
        await batcher.start()
        first = asyncio.create_task(batcher.submit(_image(0), False))
        await asyncio.sleep(0.05)  # the first one is now running, not waiting
        waiting = [asyncio.create_task(batcher.submit(_image(i), False)) for i in (1, 2)]
        await asyncio.sleep(0)
        assert batcher.waiting == 2
        with pytest.raises(BatcherFull):
            await batcher.submit(_image(9), False)
        await asyncio.gather(first, *waiting)
        await batcher.stop()

    run(main())


def test_stop_finishes_in_flight_and_then_refuses() -> None:
    async def main() -> None:
        engine = FakeEngine(delay_s=0.05)
        batcher = MicroBatcher(engine, max_batch_size=2, window_ms=0, max_queue=16)
        with pytest.raises(BatcherStopped):
            await batcher.submit(_image(0), False)  # not started
        await batcher.start()
        tasks = [asyncio.create_task(batcher.submit(_image(i), False)) for i in range(4)]
        await asyncio.sleep(0.01)
        await batcher.stop(grace_s=5)
        assert all(isinstance(t.result(), BatchedResult) for t in tasks)  # drained, none lost
        with pytest.raises(BatcherStopped):
            await batcher.submit(_image(0), False)

    run(main())


def test_stop_after_grace_fails_what_is_left() -> None:
    async def main() -> None:
        engine = FakeEngine(delay_s=0.3)
        batcher = MicroBatcher(engine, max_batch_size=1, window_ms=0, max_queue=16)
        await batcher.start()
        tasks = [asyncio.create_task(batcher.submit(_image(i), False)) for i in range(3)]
        await asyncio.sleep(0.01)
        await batcher.stop(grace_s=0.05)
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(o, BatcherStopped) for o in outcomes)

    run(main())


def test_cancelled_caller_costs_no_inference() -> None:
    async def main() -> FakeEngine:
        engine = FakeEngine(delay_s=0.05)
        batcher = MicroBatcher(engine, max_batch_size=1, window_ms=0, max_queue=16)
        await batcher.start()
        first = asyncio.create_task(batcher.submit(_image(0), False))
        await asyncio.sleep(0.01)
        gone = asyncio.create_task(batcher.submit(_image(1), False))
        await asyncio.sleep(0)
        gone.cancel()
        await first
        await batcher.stop()
        return engine

    assert run(main()).batch_sizes == [1]


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        MicroBatcher(FakeEngine(), max_batch_size=0)


def test_inference_prepares_the_next_image_while_a_batch_runs() -> None:
    async def main() -> FakeEngine:
        engine = FakeEngine(delay_s=1.0)
        batcher = MicroBatcher(engine, max_batch_size=4, window_ms=0)
        inference = Inference(engine, batcher)
        await batcher.start()
        first = asyncio.create_task(inference.run(_image(0), False))
        await asyncio.sleep(0.1)  # the first image's batch is on the engine now
        second = await inference.run(_image(1), False)
        assert (await first)[0].p_yes == image_p_yes(_image(0))
        assert second[0].p_yes == image_p_yes(_image(1))
        await batcher.stop()
        inference.close()
        return engine

    engine = run(main())
    assert engine.batch_sizes == [1, 1]
    first_batch = engine.calls[0]
    second_prepare = engine.prepared[1]
    # Preprocessing of image 1 ran during image 0's batch, in the preprocessing pool's threads.
    assert first_batch.started < second_prepare.started < first_batch.started + 1.0
    assert all(c.thread.startswith("prepare") for c in engine.prepared)


def test_inference_refuses_before_preprocessing_when_full() -> None:
    async def main() -> FakeEngine:
        engine = FakeEngine(delay_s=0.5)
        batcher = MicroBatcher(engine, max_batch_size=1, window_ms=0, max_queue=1)
        inference = Inference(engine, batcher)
        await batcher.start()
        running = asyncio.create_task(inference.run(_image(0), False))
        await asyncio.sleep(0.1)
        queued = asyncio.create_task(inference.run(_image(1), False))
        await asyncio.sleep(0.1)
        with pytest.raises(Busy):
            await inference.run(_image(2), False)
        await asyncio.gather(running, queued)
        await batcher.stop()
        inference.close()
        return engine

    engine = run(main())
    assert len(engine.prepared) == 2  # the refused image cost no preprocessing
