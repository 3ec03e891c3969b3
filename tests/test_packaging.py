"""What cannot run here is kept correct by reading: the Dockerfile (no Docker engine on CI), and
the rule that no user-supplied file is unpickled."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dockerfile_matches_the_pins_and_the_app():
    text = (ROOT / "Dockerfile").read_text()
    pin = re.search(r"^torch==([\d.]+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    base = re.search(r"^ARG BASE=pytorch/pytorch:([\d.]+)-cuda", text, re.M).group(1)
    assert base == pin, "the CUDA PyTorch base must carry the pinned torch, or pip downloads another"
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n.*127\.0\.0\.1:7860", text, re.M)
    cmd = re.search(r"^CMD \[(.*)\]$", text, re.M).group(1)
    assert '"--host", "0.0.0.0"' in cmd and '"--port", "7860"' in cmd and "/data/outputs" in cmd
    assert re.search(r"^EXPOSE 7860$", text, re.M) and re.search(r'^VOLUME \["/data"\]$', text, re.M)
    copied = set(re.findall(r"^COPY (\S+) \S+$", text, re.M))
    assert {"dde", "analysis", "app", "assets", "requirements.txt"} <= copied
    assert "HF_HOME=/data/hf-cache" in text


def test_no_user_file_is_unpickled():
    offenders = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        if ".venv" in path.parts or "tests" in path.parts:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if re.search(r"\bimport pickle\b|\bpickle\.loads?\(|allow_pickle=True|use_safetensors=False", code):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
            if "torch.load(" in code and "weights_only=True" not in code:
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, offenders
