"""The README's run command prints nothing a user cannot act on: the commands it runs,
in fresh processes, write their results and no warning (library noise such as
transformers' torchvision notices or diffusers' dtype remarks) to stderr."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.needs_toy_model


def test_generate_grid_and_xyz_print_no_warnings(tmp_path):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    script = (
        "import sys\n"
        "from hypernet.cli import main\n"
        "assert main(['generate', 'a red circle on a blue background <hypernet:water:1>', '--seed', '1', '--steps', '2',"
        f" '--quiet', '--out', {str(tmp_path)!r}]) == 0\n"
        "assert main(['grid', 'a red circle', '--hypernet', 'neon', '--multipliers', '0,1', '--seeds', '1', '--steps', '2',"
        f" '--quiet', '--out', {str(tmp_path)!r}]) == 0\n"
        "assert main(['xyz', 'a red circle', '--x', 'sampler:Euler a,DDIM', '--y', 'hypernet:water,none', '--steps', '2',"
        f" '--size', '32x32', '--quiet', '--out', {str(tmp_path)!r}]) == 0\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                            cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""
    assert len(list(tmp_path.glob("*.png"))) >= 2
