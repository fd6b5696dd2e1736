"""Generation, run-folder loading, chat and generate on the tiny model.

The shared tiny model has small random weights and answers every prompt with newlines, which would let a batching
bug pass unseen. The fixtures here redraw its weights larger, so that greedy answers differ from prompt to prompt,
and add a random LoRA adapter, so that the tuned model answers differently from its base.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ft.cli
from ft.data.shapes import to_conversation
from ft.errors import FtError
from ft.evaluate import generation
from ft.evaluate.chat import ChatSession, run_chat
from ft.evaluate.datasets import read_eval_data
from ft.evaluate.generation import Generation, generate_batch, generate_batched
from ft.evaluate.loading import default_output_dir, find_target, load_for_generation, load_tokenizer_traits
from ft.evaluate.runner import evaluate_loaded, run_eval, tokenize_prompts

REPO = Path(__file__).resolve().parents[1]
QUICKSTART_EVAL = REPO / "data" / "quickstart" / "eval.jsonl"
END_TOKEN_ID = 2  # <|im_end|> in the SmolLM2 tokenizer


@pytest.fixture(scope="module")
def varied_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, 0.3)
    folder = tmp_path_factory.mktemp("varied-llama")
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def run_dir(varied_model_dir, tmp_path_factory) -> Path:
    """A run folder as `ft train` writes it: adapter/ with the PEFT adapter, tokenizer and ft_model.json."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path_factory.mktemp("runs") / "tiny-run"
    adapter = run / "adapter"
    model = AutoModelForCausalLM.from_pretrained(varied_model_dir, dtype=torch.float32)
    torch.manual_seed(2)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(adapter)
    AutoTokenizer.from_pretrained(varied_model_dir).save_pretrained(adapter)
    (adapter / "ft_model.json").write_text(json.dumps({
        "base_model": str(varied_model_dir), "base_folder": str(varied_model_dir), "origin": "local",
        "tool_call_style": "smollm2", "end_token_id": END_TOKEN_ID,
    }))
    (run / "config.yaml").write_text("model:\n  name: tiny\n")
    return run


@pytest.fixture(scope="module")
def base_model(varied_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(varied_model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def quickstart_prompts(varied_model_dir) -> tuple[object, list[list[int]]]:
    target = find_target(str(varied_model_dir))
    tokenizer, traits, _ = load_tokenizer_traits(target, "smollm2")
    data = read_eval_data(str(QUICKSTART_EVAL), "test", None, "tools", "first", limit=5)
    return tokenizer, tokenize_prompts(data.items, tokenizer, traits)


# ---------------------------------------------------------------------------------------------------------------
# Generation


def test_batched_matches_one_at_a_time(base_model, quickstart_prompts):
    tokenizer, prompts = quickstart_prompts

    alone = [generate_batched(base_model, tokenizer, [prompt], [END_TOKEN_ID], 12, 1)[0] for prompt in prompts]
    batched = generate_batched(base_model, tokenizer, prompts, [END_TOKEN_ID], 12, 3)

    assert len({len(prompt) for prompt in prompts}) == len(prompts)  # every row is padded differently
    assert len({generation.text for generation in alone}) == len(prompts)
    assert batched == alone


def test_stop_token_ends_turn(base_model, quickstart_prompts):
    import torch

    tokenizer, prompts = quickstart_prompts
    with torch.inference_mode():
        free_ids = base_model.generate(torch.tensor([prompts[0]]), max_new_tokens=6, do_sample=False,
                                       pad_token_id=END_TOKEN_ID, eos_token_id=[END_TOKEN_ID])[0, len(prompts[0]):]
    stop_id = int(free_ids[3])
    first_stop = free_ids.tolist().index(stop_id)

    stopped = generate_batch(base_model, tokenizer, [prompts[0]], [stop_id], 6)[0]
    capped = generate_batch(base_model, tokenizer, [prompts[0]], [END_TOKEN_ID], 6)[0]

    assert stopped.ended is True
    assert stopped.new_tokens == first_stop + 1
    assert stopped.text == tokenizer.decode(free_ids[:first_stop])
    assert capped.ended is False
    assert capped.new_tokens == 6


# ---------------------------------------------------------------------------------------------------------------
# Loading


def test_find_target_of_run_folder(run_dir, varied_model_dir):
    target = find_target(str(run_dir))

    assert target.kind == "run"
    assert target.adapter_dir == run_dir / "adapter"
    assert target.base.folder == varied_model_dir
    assert target.tokenizer_source.folder == run_dir / "adapter"
    assert target.tool_call_style == "smollm2"
    assert target.end_token_id == END_TOKEN_ID
    assert default_output_dir(target) == run_dir / "eval"


def test_find_target_of_adapter_folder(run_dir):
    target = find_target(str(run_dir / "adapter"))

    assert target.kind == "run"
    assert target.run_dir == run_dir
    assert target.label == "tuned"


def test_find_target_of_base_model(varied_model_dir):
    target = find_target(str(varied_model_dir))

    assert target.kind == "model"
    assert target.adapter_dir is None
    assert target.label == "base"
    assert default_output_dir(target).name.startswith("eval-")


def test_style_override_rejected_for_run(run_dir):
    with pytest.raises(FtError, match="--tool-call-style: .* is fine-tuned"):
        run_eval(str(run_dir), str(QUICKSTART_EVAL), tool_call_style="hermes")


def test_unfinished_run_rejected(tmp_path):
    (tmp_path / "checkpoints").mkdir()

    with pytest.raises(FtError, match="training has not finished"):
        find_target(str(tmp_path))


# ---------------------------------------------------------------------------------------------------------------
# Evaluation on real weights


def generations_of(result: dict, label: str) -> list[str]:
    return [record["outputs"][label]["generation"] for record in result["records"]]


def test_run_with_auto_baseline(run_dir, varied_model_dir, tmp_path):
    result, out_dir = run_eval(str(run_dir), str(QUICKSTART_EVAL), baseline="auto", limit=3, max_new_tokens=8,
                               batch_size=2)
    base_alone, _ = run_eval(str(varied_model_dir), str(QUICKSTART_EVAL), limit=3, max_new_tokens=8,
                             tool_call_style="smollm2", out_dir=tmp_path / "base")

    assert out_dir == run_dir / "eval"
    assert (out_dir / "eval.json").is_file()
    assert [model["label"] for model in result["models"]] == ["base", "tuned"]
    assert [model["name"] for model in result["models"]] == [str(varied_model_dir), str(run_dir)]
    assert generations_of(result, "base") == generations_of(base_alone, "base")
    assert generations_of(result, "base") != generations_of(result, "tuned")
    assert set(result["difference"]) >= {"call_decision_accuracy", "malformed_rate", "ended_within_cap_rate"}


def test_evaluate_loaded_matches_eval(run_dir, varied_model_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    # float32 on both sides: `auto` is bfloat16 on a CPU with AMX, and the comparison is of the code paths.
    result, _ = run_eval(str(run_dir), str(QUICKSTART_EVAL), limit=3, max_new_tokens=8, precision="float32",
                         out_dir=tmp_path / "eval")
    base = AutoModelForCausalLM.from_pretrained(varied_model_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(run_dir / "adapter"))
    model.train()
    tokenizer, traits, end_token_id = load_tokenizer_traits(find_target(str(run_dir)))
    lines = QUICKSTART_EVAL.read_text(encoding="utf-8").splitlines()[:3]
    conversations = [to_conversation(f"eval.jsonl:{index + 1}", json.loads(line), None, "tools")
                     for index, line in enumerate(lines)]

    in_memory = evaluate_loaded(model, tokenizer, conversations, traits, end_token_id, max_new_tokens=8,
                                batch_size=2)

    assert [record["generation"] for record in in_memory["records"]] == generations_of(result, "tuned")
    assert in_memory["metrics"] == result["models"][0]["metrics"]
    assert model.training is True


# ---------------------------------------------------------------------------------------------------------------
# Chat and generate

PLUG_SCRIPT = (
    "import sys, ft.cli\n"
    "names = {name for name, _, _ in ft.cli.PLUGGED_COMMANDS}\n"
    "for entry in [('chat', 'ft.evaluate.chat_cli', 'chat'), ('generate', 'ft.evaluate.generate_cli', 'generate')]:\n"
    "    if entry[0] not in names:\n"
    "        ft.cli.PLUGGED_COMMANDS.append(entry)\n"
    "sys.exit(ft.cli.main(sys.argv[1:]))\n"
)


def test_chat_over_stdin(run_dir):
    completed = subprocess.run(
        [sys.executable, "-c", PLUG_SCRIPT, "chat", str(run_dir), "--max-new-tokens", "4", "--system", "Be brief."],
        input="hello\nwhat can you do?\n", capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=REPO,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith(f"chat with {run_dir} (smollm2 tool call style)")
    assert completed.stdout.count("[cut off at --max-new-tokens 4]") == 2
    assert completed.stdout.count("> ") == 3


def test_chat_shows_tool_calls(run_dir, monkeypatch):
    answers = iter([
        Generation('<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</tool_call>', 20, True),
        Generation("It is sunny in Paris.", 7, True),
    ])
    prompts = []

    def scripted_stream(model, tokenizer, prompt, stop_ids, max_new_tokens, temperature, on_text):
        prompts.append(tokenizer.decode(prompt))
        answer = next(answers)
        on_text(answer.text)
        return answer

    monkeypatch.setattr(generation, "generate_streaming", scripted_stream)
    session = ChatSession(load_for_generation(str(run_dir)), max_new_tokens=32)
    lines = iter(["Weather in Paris?", "/tool sunny, 24 C", "/bogus", "/exit", "never read"])
    out = io.StringIO()

    run_chat(session, lambda prompt: next(lines), out)

    text = out.getvalue()
    assert 'tool call: get_weather({"city": "Paris"})' in text
    assert "It is sunny in Paris." in text
    assert "unknown command /bogus" in text
    assert [message["role"] for message in session.history] == ["user", "assistant", "tool", "assistant"]
    assert "sunny, 24 C" in prompts[1]
    assert '"city": "Paris"' in prompts[1]


def test_chat_reset_and_end_of_input(run_dir, monkeypatch):
    def scripted_stream(model, tokenizer, prompt, stop_ids, max_new_tokens, temperature, on_text):
        on_text("Hello.")
        return Generation("Hello.", 3, True)

    monkeypatch.setattr(generation, "generate_streaming", scripted_stream)
    session = ChatSession(load_for_generation(str(run_dir)))
    lines = iter(["hi", "/reset"])

    def read_line(prompt: str) -> str:
        line = next(lines, None)
        if line is None:
            raise EOFError
        return line

    out = io.StringIO()
    run_chat(session, read_line, out)

    assert "history cleared" in out.getvalue()
    assert session.history == []


def test_generate_json(run_dir, monkeypatch, capsys, tmp_path):
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]))
    monkeypatch.setattr(ft.cli, "PLUGGED_COMMANDS",
                        [("generate", "ft.evaluate.generate_cli", "generate")])

    code = ft.cli.main(["generate", str(run_dir), "--prompt", "hello", "--tools", str(tools), "--max-new-tokens", "5",
                        "--json"])

    assert code == 0
    output = json.loads(capsys.readouterr().out)
    assert set(output) == {"text", "calls", "malformed", "ended", "new_tokens"}
    assert output["new_tokens"] <= 5


def test_generate_rejects_bad_tools_file(run_dir, monkeypatch, capsys, tmp_path):
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps({"name": "not a list"}))
    monkeypatch.setattr(ft.cli, "PLUGGED_COMMANDS", [("generate", "ft.evaluate.generate_cli", "generate")])

    code = ft.cli.main(["generate", str(run_dir), "--prompt", "hello", "--tools", str(tools)])

    assert code == 2
    assert f"--tools {tools}: tools must be a list" in capsys.readouterr().err
