"""The run viewer's live refresh: a background task on the running event loop (as in a Jupyter kernel) picks up the
lines a training run appends, and stops when asked."""
import asyncio, json

from slimlab.widgets import RunViewer


def line(step: int) -> str:
    return json.dumps(dict(split='train', step=step, tokens=step*1024, lr=1e-4, loss=3.0/step, kd=2.0/step)) + '\n'


def test_live_refresh_follows_a_growing_file(tmp_path):
    (tmp_path/'metrics.jsonl').write_text(''.join(line(s) for s in range(1, 4)))
    viewer = RunViewer(tmp_path, interval=0.05)
    assert len(viewer.records) == 3

    async def run():
        viewer.live.value = True  # the toggle starts the background refresh
        assert viewer._task is not None
        with (tmp_path/'metrics.jsonl').open('a') as f:
            f.write(''.join(line(s) for s in range(4, 9)))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if len(viewer.records) == 8: break
        viewer.live.value = False
        assert viewer._task is None
        with (tmp_path/'metrics.jsonl').open('a') as f: f.write(line(9))
        await asyncio.sleep(0.2)

    asyncio.run(run())
    assert [r['step'] for r in viewer.records] == list(range(1, 9)), 'live refresh missed lines or kept running after stop'
    assert 'last step 8' in viewer.status.value
    assert viewer.refresh() == 1


def test_live_refresh_without_an_event_loop_says_why(tmp_path):
    viewer = RunViewer(tmp_path)
    viewer.live.value = True
    assert viewer.live.value is False
    assert 'needs a running event loop' in viewer.status.value
    assert 'no lines yet' in viewer.summary()
