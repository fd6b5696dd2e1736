"""A fake Hugging Face token set in the environment appears in no output and no file that ft writes."""

from __future__ import annotations

from pathlib import Path

from ft.cli import main

REPO = Path(__file__).resolve().parents[1]
FAKE_TOKEN = "hf_FakeTokenForHygieneTest0123456789abcd"


def files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(path) for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


def test_token_never_written_or_printed(tmp_path, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("FT_HOME", str(tmp_path / "ft-home"))
    config = tmp_path / "hygiene.yaml"
    config.write_text(f"""# Run: ft train hygiene.yaml
model:
  name: {tiny_model_dir}
data:
  train: {REPO / 'data/quickstart/train.jsonl'}
  eval: {REPO / 'data/quickstart/eval.jsonl'}
  max_rows: 4
  eval_max_rows: 2
  max_length: 512
training:
  max_steps: 2
  batch_size: 2
  save_every_steps: 1
  tool_eval_rows: 2
  tool_eval_max_new_tokens: 4
output:
  dir: {tmp_path / 'runs'}
  run_name: hygiene
""")
    run = tmp_path / "runs" / "hygiene"
    codes = {
        "train": main(["train", str(config)]),
        "eval": main(["eval", str(run), "--data", str(REPO / "data/quickstart/eval.jsonl"), "--limit", "2",
                      "--max-new-tokens", "4", "--out", str(tmp_path / "eval")]),
        "submit": main(["submit", str(REPO / "configs/quickstart.yaml"), "--flavor", "a10g-small", "--dry-run",
                        "--set", "output.hub_repo=someone/tools", "--set", f"output.dir={tmp_path / 'runs'}"]),
        "jobs ps": main(["jobs", "ps"]),
        "doctor": main(["doctor"]),
    }
    captured = capsys.readouterr()

    assert codes["train"] == 0
    assert codes["eval"] == 0
    assert codes["submit"] == 0
    assert codes["jobs ps"] == 0
    assert FAKE_TOKEN not in captured.out
    assert FAKE_TOKEN not in captured.err
    assert "HF_TOKEN" in captured.out, "the dry-run spec names the secret"
    assert files_containing(tmp_path, FAKE_TOKEN.encode()) == []
    assert (run / "adapter" / "README.md").is_file()
