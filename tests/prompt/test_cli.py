"""`hypernet prompt check` and the package's import weight."""

import json
import subprocess
import sys

from hypernet.cli import main
from hypernet.prompt import explain_prompt

SEED_PROMPT = (
    "detailed face, a beautiful woman, (masterpiece:1.2), [cat:dog:0.5] <hypernet:incaseStyle_incaseAnythingV3:1>"
)


def test_check_prints_networks_segments_and_schedule(capsys):
    assert main(["prompt", "check", SEED_PROMPT, "--steps", "10"]) == 0
    out = capsys.readouterr().out
    assert "warnings: none" in out
    assert "hypernet 'incaseStyle_incaseAnythingV3' x 1" in out
    assert "until step 5:" in out and "until step 10:" in out
    assert "'masterpiece'" in out and "1.2" in out


def test_check_prints_warnings_with_positions(capsys):
    assert main(["prompt", "check", "a (cat <foo:bar> [x:y:30]", "--steps", "20"]) == 0
    out = capsys.readouterr().out
    assert "position 2: '(' is never closed" in out
    assert "position 7:" in out and "unknown network type 'foo'" in out
    assert "[edit-never]" in out
    assert "networks: error:" in out


def test_check_json(capsys):
    assert main(["prompt", "check", "[a|b] x", "--steps", "2", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info == explain_prompt("[a|b] x", 2)
    assert [entry["text"] for entry in info["parts"][0]["schedule"]] == ["a x", "b x"]


def test_check_negative_prompt_is_not_split_on_and(capsys):
    assert main(["prompt", "check", "ugly AND blurry:2", "--negative", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert len(info["parts"]) == 1 and info["parts"][0]["text"] == "ugly AND blurry:2"
    assert main(["prompt", "check", "ugly AND blurry:2", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [(part["text"], part["weight"]) for part in info["parts"]] == [("ugly", 1.0), (" blurry", 2.0)]


def test_check_rejects_zero_steps(capsys):
    assert main(["prompt", "check", "a", "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err


def test_importing_the_parser_does_not_import_torch():
    code = (
        "import sys, hypernet.prompt as p; p.parse_emphasis('(a)'); p.schedule('[a|b]', 2); p.check('(a'); "
        "p.extract_networks('<lora:x>'); print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
