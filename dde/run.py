"""RunDir: the one owner of a training run folder's layout.

    run/
      config.yaml              the TrainConfig (YAML)
      scheduler_config.json    the backend's noise schedule (for the run's calibrated weights)
      metrics.jsonl            one row per logged step: loss, implicit accuracy, reward margin, ...
      credit.jsonl             per logged step: each pair's t and empirical credit
      calibration.jsonl        per logged step: the calibration table (r per bin, v, counts, clipped)
      val.jsonl                per checkpoint: loss and implicit accuracy on held-back pairs
      judge.jsonl              per checkpoint (toy world): judge score of fixed training-split prompts
      status.json              finished / cancelled / failed, the last step, an error message
      checkpoints/latest.json  {"step": N} of the newest complete checkpoint
      checkpoints/step-NNNNNNN/  lora.safetensors or unet.safetensors, optimizer, calibration, state.json
      final/                   the finished weights, calibration table and config

The trainer writes through this class; analysis, the app and the benchmarks read through it. Every
write is atomic (:mod:`dde.io`) except appends to the logs, whose torn last line (a killed process)
the readers skip.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from dde.io import atomic_write_json, atomic_write_text

LOGS = ("metrics", "credit", "calibration", "val", "judge")
LORA, UNET = "lora.safetensors", "unet.safetensors"  # the weights of a LoRA run, of a full fine-tune
WEIGHT_FILES = (LORA, UNET)
# inside a checkpoint folder (and final/) besides the weights
STATE, OPTIMIZER, CALIBRATION, CONFIG = "state.json", "optimizer.safetensors", "calibration.safetensors", "config.yaml"


class RunDir:
    """A run folder (it need not exist yet). Paths are properties; readers tolerate missing files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ----- paths ----------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def scheduler_path(self) -> Path:
        return self.path / "scheduler_config.json"

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def final(self) -> Path:
        return self.path / "final"

    def log(self, name: str) -> Path:
        if name not in LOGS:
            raise ValueError(f"unknown run log {name!r}; known: {', '.join(LOGS)}")
        return self.path / f"{name}.jsonl"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step-{int(step):07d}"

    # ----- what is there ------------------------------------------------------------------------------
    @staticmethod
    def is_run(path: str | Path) -> bool:
        """A folder with a config and at least one of: a log, a checkpoint, final weights."""
        run = RunDir(path)
        return run.config_path.is_file() and (run.log("metrics").is_file() or run.latest_step() is not None
                                              or run.weights() is not None)

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint (checkpoints/latest.json), if any."""
        path = self.checkpoints / "latest.json"
        try:
            return int(json.loads(path.read_text())["step"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def checkpoint_steps(self) -> list[int]:
        """Steps of the checkpoint folders present, ascending."""
        steps = []
        for folder in self.checkpoints.glob("step-*"):
            try:
                steps.append(int(folder.name.split("-", 1)[1]))
            except ValueError:
                continue
        return sorted(steps)

    @staticmethod
    def of_weights(path: str | Path) -> RunDir | None:
        """The run a weights file belongs to (``<run>/final/`` or ``<run>/checkpoints/step-N/``), if any."""
        path = Path(path)
        if path.name not in WEIGHT_FILES:
            return None
        if path.parent.name == "final":
            return RunDir(path.parent.parent)
        if path.parent.name.startswith("step-") and path.parent.parent.name == "checkpoints":
            return RunDir(path.parent.parent.parent)
        return None

    def weights(self, step: int | None = None) -> Path | None:
        """The weights file (LoRA or full UNet) of ``final/`` (``step`` None) or of a checkpoint."""
        folder = self.final if step is None else self.checkpoint(step)
        return next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)

    def latest_weights(self) -> Path | None:
        """``final/`` weights, else those of the newest checkpoint present."""
        found = self.weights()
        for step in reversed(self.checkpoint_steps()):
            found = found or self.weights(step)
        return found

    # ----- reading ----------------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        """The run's config as saved (a dict; :func:`dde.config.from_dict` validates it)."""
        if not self.config_path.is_file():
            raise ValueError(f"{self.path} is not a run folder: {self.config_path.name} is missing")
        from dde.config import parse_yaml

        try:
            data = parse_yaml(self.config_path.read_text())
        except yaml.YAMLError as err:
            raise ValueError(f"{self.config_path} is not valid YAML ({err})") from err
        if not isinstance(data, dict):
            raise ValueError(f"{self.config_path} does not hold a mapping")
        return data

    def config(self):
        """The run's :class:`dde.config.TrainConfig`."""
        from dde.config import from_dict

        return from_dict(self.config_dict())

    def rows(self, name: str) -> list[dict]:
        """Every complete row of a log (``metrics``, ``credit``, ``calibration``, ``val``, ``judge``);
        a missing file gives no rows, a torn or garbled line is skipped."""
        path = self.log(name)
        if not path.is_file():
            return []
        rows = []
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def scheduler_config(self) -> dict | None:
        try:
            return json.loads(self.scheduler_path.read_text())
        except (OSError, ValueError):
            return None

    def schedule(self, fallback=None):
        """The :class:`dde.schedule.NoiseSchedule` the run trained with, else ``fallback``."""
        from dde.schedule import NoiseSchedule

        config = self.scheduler_config()
        return NoiseSchedule.from_scheduler_config(config) if config else fallback

    def calibration_tables(self, every: int = 1) -> list[tuple[int, Any]]:
        """``(step, CalibrationTable)`` for every ``every``-th logged calibration row."""
        from dde.credit import CalibrationTable

        schedule = self.schedule()
        T = schedule.T if schedule is not None else 1000  # noqa: N806
        out = []
        for row in self.rows("calibration")[::every]:
            try:
                table = CalibrationTable(T, len(row["r"]), v=row["v"], r=row["r"],
                                         counts=row.get("counts", [1] * len(row["r"])),
                                         v_count=row.get("v_count", 0))
            except (KeyError, TypeError, ValueError):
                continue
            out.append((int(row["step"]), table))
        return out

    def calibration_table(self):
        """The run's calibration table as last logged, or None (uncalibrated variants log none)."""
        tables = self.calibration_tables()
        return tables[-1][1] if tables else None

    def status(self) -> dict | None:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return None

    # ----- writing (the trainer) -----------------------------------------------------------------------
    def write_config(self, cfg) -> None:
        from dde.config import save_config

        save_config(cfg, self.config_path)

    def write_scheduler_config(self, config: dict) -> None:
        atomic_write_json(dict(config), self.scheduler_path)

    def write_status(self, report: dict) -> None:
        atomic_write_json(report, self.status_path)

    def append(self, name: str, row: dict) -> None:
        with open(self.log(name), "a") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()

    def truncate_logs(self, step: int) -> None:
        """Drop log rows past ``step`` (the checkpoint being resumed; they will be written again)."""
        for name in LOGS:
            path = self.log(name)
            if path.is_file():
                keep = [json.dumps(r) for r in self.rows(name) if r.get("step", 0) <= step]
                atomic_write_text("".join(line + "\n" for line in keep), path)

    def clear(self) -> None:
        """Remove logs, status and final weights of a run that never reached a checkpoint."""
        for name in LOGS:
            self.log(name).unlink(missing_ok=True)
        self.status_path.unlink(missing_ok=True)
        shutil.rmtree(self.final, ignore_errors=True)

    def mark_latest(self, step: int, *, keep: int = 2, keep_every: int = 0) -> None:
        """Point latest.json at ``step`` (its folder complete); keep the newest ``keep`` checkpoints
        and every one whose step is a multiple of ``keep_every`` (> 0), remove the others."""
        atomic_write_json({"step": int(step), "folder": self.checkpoint(step).name}, self.checkpoints / "latest.json")
        for old in self.checkpoint_steps()[:-keep]:
            if not (keep_every > 0 and old % keep_every == 0):
                shutil.rmtree(self.checkpoint(old), ignore_errors=True)

    def copy_logs(self, dest: str | Path) -> RunDir:
        """Copy config, schedule, logs and status (no weights) into ``dest`` (a shipped run's record)."""
        out = RunDir(dest)
        out.path.mkdir(parents=True, exist_ok=True)
        for src in (self.config_path, self.scheduler_path, self.status_path, *(self.log(n) for n in LOGS)):
            if src.is_file():
                shutil.copyfile(src, out.path / src.name)
        return out
