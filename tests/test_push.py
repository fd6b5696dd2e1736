"""A failed final push keeps every local file, prints the retry command and exits non-zero."""

from __future__ import annotations

from pathlib import Path

import ft.hub
from ft.cli import main
from ft.hub import PUSH_FAILED_EXIT_CODE

REPO = Path(__file__).resolve().parents[1]


def test_failed_final_push_keeps_files(tmp_path, tiny_model_dir, monkeypatch, capsys):
    pushed = []

    def fail_push(folder, repo_id, private, path_in_repo, message):
        pushed.append(path_in_repo)
        raise ConnectionError("the Hub closed the connection")

    monkeypatch.setattr(ft.hub, "check_write_access", lambda repo_id: "someone")
    monkeypatch.setattr(ft.hub, "push_folder", fail_push)
    config = tmp_path / "push.yaml"
    config.write_text(f"""# Run: ft train push.yaml
model:
  name: {tiny_model_dir}
data:
  train: {REPO / 'data/quickstart/train.jsonl'}
  max_rows: 4
  max_length: 512
training:
  max_steps: 2
  batch_size: 2
  save_every_steps: 1
output:
  dir: {tmp_path / 'runs'}
  run_name: pushed
  push_to_hub: true
  hub_repo: someone/tool-model
""")
    code = main(["train", str(config)])
    captured = capsys.readouterr()
    run = tmp_path / "runs" / "pushed"
    assert code == PUSH_FAILED_EXIT_CODE
    assert f"Retry with: ft push {run} --repo someone/tool-model" in captured.err
    assert "warning: pushing checkpoint-1 to someone/tool-model failed" in captured.out
    assert pushed == ["checkpoints/checkpoint-1", "checkpoints/checkpoint-2", None]
    for name in ("adapter/adapter_model.safetensors", "adapter/README.md", "summary.json", "metrics.jsonl"):
        assert (run / name).is_file(), name
    assert "base_model:" in (run / "adapter" / "README.md").read_text()
