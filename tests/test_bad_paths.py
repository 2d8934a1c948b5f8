"""Every command against bad input and bad output paths: exit status 2, one line
`vbpi-mix: error: ...` naming the file (or the option) and the problem, no traceback, and no
file left behind. A full disk (ENOSPC) mid-command stops it the same way and keeps every
earlier output; the same command then resumes."""

from __future__ import annotations

import errno
import gzip
from pathlib import Path

import pytest
import torch

from tests.conftest import EXAMPLE_FASTA, EXAMPLE_TREE, REPO_ROOT
from tests.test_inference import example_support
from vbpi_mix.cli import main
from vbpi_mix.inference.runs import ModelConfig, create_run, read_metrics
from vbpi_mix.inference.trainer import CHECKPOINT, TrainingConfig

SUPPORT_DIR = REPO_ROOT / "data" / "example_support"
NEWICK = EXAMPLE_TREE.read_text().strip()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Inputs, good and bad, and a finished small run folder."""
    folder = tmp_path_factory.mktemp("inputs")
    texts = {
        "unequal.fasta": ">a\nACGT\n>b\nACG\n>c\nACGT\n>d\nACGT\n",
        "duplicate.fasta": ">a\nACGT\n>a\nACGT\n>c\nACGT\n>d\nACGT\n",
        "three.fasta": ">a\nACGT\n>b\nACGA\n>c\nACGG\n",
        "not_dna.fasta": ">a\nAC1T\n>b\nACGT\n>c\nACGT\n>d\nACGT\n",
        "no_lengths.nwk": NEWICK.replace(":", "#").split("#")[0] + ");\n",
        "alien.nwk": NEWICK.replace("taxon_03", "stranger") + "\n",
        "broken.nwk": "((taxon_01:0.1,taxon_02:0.1\n",
        "a_file": "not a folder\n",
        "golden_alien.trprobs": "#NEXUS\nbegin trees;\n tree t = [&W 1] (a,b,(c,d));\nend;\n",
    }
    paths = {name: folder / name for name in texts}
    for name, text in texts.items():
        paths[name].write_text(text)
    paths["no_lengths.nwk"].write_text(
        "(" + ",".join(f"taxon_{i:02d}" for i in range(1, 17)) + ");\n"
    )
    paths["binary.fasta"] = folder / "binary.fasta"
    paths["binary.fasta"].write_bytes(b"\x00\x01\x02binary" * 10)
    paths["empty_support"] = folder / "empty_support"
    paths["empty_support"].mkdir()
    paths["alien_support"] = folder / "alien_support"
    paths["alien_support"].mkdir()
    with gzip.open(paths["alien_support"] / "rep_1.ufboot.gz", "wt") as stream:
        stream.write(NEWICK.replace("taxon_05", "stranger") + "\n")
    run = folder / "run"
    model = ModelConfig(alignment=str(EXAMPLE_FASTA), components=2)
    training = TrainingConfig(iterations=4, particles=3, warmup=1, seed=1)
    create_run(run, model, training, example_support()).trainer.run(progress=False)
    paths["run"] = run
    damaged = folder / "damaged_run"
    damaged.mkdir()
    for name in ("config.json", "support.tsv"):
        (damaged / name).write_text((run / name).read_text())
    (damaged / CHECKPOINT).write_bytes(b"not a checkpoint")
    paths["damaged_run"] = damaged
    bench_data = folder / "bench_data" / "DS5"
    (bench_data / "ufboot").mkdir(parents=True)
    (bench_data / "DS5.fasta").write_text(EXAMPLE_FASTA.read_text())
    (bench_data / "ufboot" / "rep_1.ufboot.gz").write_bytes(
        (SUPPORT_DIR / "rep_1.trees.gz").read_bytes()
    )
    paths["bench_data"] = bench_data.parent
    return paths


FIT = ["fit", str(EXAMPLE_FASTA), "--support-dir", str(SUPPORT_DIR), "--quiet"]

# (name, arguments with {file} placeholders and {out} for a fresh path, text the line holds)
CASES = [
    ("fit: alignment missing", ["fit", "{out}/none.fasta", "--support-dir", str(SUPPORT_DIR),
                                "--out", "{out}/r"], "none.fasta"),
    ("fit: sequences of unequal length", ["fit", "{unequal.fasta}", "--support-dir",
                                          str(SUPPORT_DIR), "--out", "{out}/r"], "unequal.fasta"),
    ("fit: duplicate names", ["fit", "{duplicate.fasta}", "--support-dir", str(SUPPORT_DIR),
                              "--out", "{out}/r"], "duplicate.fasta"),
    ("fit: a binary file", ["fit", "{binary.fasta}", "--support-dir", str(SUPPORT_DIR),
                            "--out", "{out}/r"], "binary.fasta"),
    ("fit: three taxa", ["fit", "{three.fasta}", "--support-dir", str(SUPPORT_DIR),
                         "--out", "{out}/r"], "three.fasta"),
    ("fit: not DNA", ["fit", "{not_dna.fasta}", "--support-dir", str(SUPPORT_DIR),
                      "--out", "{out}/r"], "not_dna.fasta"),
    ("fit: support folder missing", ["fit", str(EXAMPLE_FASTA), "--support-dir",
                                     "{out}/nowhere", "--out", "{out}/r"], "nowhere"),
    ("fit: empty support folder", ["fit", str(EXAMPLE_FASTA), "--support-dir",
                                   "{empty_support}", "--out", "{out}/r"], "empty_support"),
    ("fit: support taxa differ", ["fit", str(EXAMPLE_FASTA), "--support-dir",
                                  "{alien_support}", "--out", "{out}/r"], "rep_1.ufboot.gz"),
    ("fit: --out in /proc", [*FIT, "--out", "/proc/vbpi-mix-nope"], "/proc/vbpi-mix-nope"),
    ("fit: --out under a file", [*FIT, "--out", "/dev/null/x"], "/dev/null"),
    ("fit: --out is a file", [*FIT, "--out", "{a_file}"], "a_file"),
    ("fit: --out holds another fit", [*FIT, "--out", "{run}"], "other settings"),
    ("fit: warm-up past the end", [*FIT, "--out", "{out}/r", "--iterations", "10",
                                   "--warmup", "50"], "--warmup 50"),
    ("fit: VIMCO with one particle", [*FIT, "--out", "{out}/r", "--particles", "1"],
     "--particles 1"),
    ("evaluate: not a run folder", ["evaluate", "{empty_support}"], "empty_support"),
    ("evaluate: damaged checkpoint", ["evaluate", "{damaged_run}"], "checkpoint.pt"),
    ("evaluate: golden file missing", ["evaluate", "{run}", "--golden", "{out}/g.trprobs"],
     "g.trprobs"),
    ("evaluate: golden taxa differ", ["evaluate", "{run}", "--golden",
                                      "{golden_alien.trprobs}"], "golden_alien.trprobs"),
    ("sample: -o is a folder", ["sample", "{run}", "-n", "5", "-o", "{empty_support}"],
     "empty_support"),
    ("sample: -o in /proc", ["sample", "{run}", "-n", "5", "-o", "/proc/vbpi-mix/t.nex"],
     "/proc/vbpi-mix/t.nex"),
    ("sample: --topologies under a file", ["sample", "{run}", "-n", "5", "-o", "{out}/t.nex",
                                           "--topologies", "/dev/null/t.tsv"], "/dev/null"),
    ("sample: run folder missing", ["sample", "{out}/no_run", "-n", "5", "-o", "{out}/t.nex"],
     "no_run"),
    ("summarize: -o in /sys", ["summarize", "{run}", "-o", "/sys/vbpi-mix"], "/sys/vbpi-mix"),
    ("summarize: -o is a file", ["summarize", "{run}", "-o", "{a_file}"], "a_file"),
    ("loglik: trees file missing", ["loglik", str(EXAMPLE_FASTA), "{out}/none.nwk"],
     "none.nwk"),
    ("loglik: a taxon not in the alignment", ["loglik", str(EXAMPLE_FASTA), "{alien.nwk}"],
     "alien.nwk"),
    ("loglik: no branch lengths", ["loglik", str(EXAMPLE_FASTA), "{no_lengths.nwk}"],
     "no_lengths.nwk"),
    ("loglik: broken Newick", ["loglik", str(EXAMPLE_FASTA), "{broken.nwk}"], "broken.nwk"),
    ("support: -o in /proc", ["support", str(EXAMPLE_FASTA), "-o", "/proc/vbpi-mix"],
     "/proc/vbpi-mix"),
    ("support: alignment missing", ["support", "{out}/none.fasta", "-o", "{out}/s"],
     "none.fasta"),
    ("bench: --out under a file", ["bench", "DS5", "--data", "{bench_data}", "--out",
                                   "/dev/null/b"], "/dev/null"),
    ("bench: data folder missing", ["bench", "DS5", "--data", "{out}/no_data", "--out",
                                    "{out}/b"], "no_data"),
]  # fmt: skip


def snapshot(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.mark.parametrize(("name", "arguments", "named"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_and_bad_paths_are_one_line_errors(
    files, tmp_path, capsys, name, arguments, named
):
    values = {key: str(path) for key, path in files.items()} | {"out": str(tmp_path)}
    argv = []
    for argument in arguments:
        for key, value in values.items():
            argument = argument.replace("{" + key + "}", value)
        argv.append(argument)
    inputs = files["run"].parent
    before = snapshot(inputs), snapshot(tmp_path)
    assert main(argv) == 2, name
    error = capsys.readouterr().err
    assert "Traceback" not in error
    lines = error.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vbpi-mix: error: "), error
    assert named in lines[0]
    assert (snapshot(inputs), snapshot(tmp_path)) == before  # nothing written, nothing left


def test_there_are_at_least_25_cases_over_every_command():
    assert len(CASES) >= 25
    commands = {arguments[0] for _, arguments, _ in CASES}
    assert commands == {"fit", "evaluate", "sample", "summarize", "loglik", "support", "bench"}


def test_a_full_disk_at_a_checkpoint_keeps_the_last_one_and_the_fit_resumes(
    tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    base = [*FIT, "--out", str(out), "--particles", "3", "--eval-every", "0",
            "--eval-particles", "20", "--eval-repeats", "2"]  # fmt: skip
    command = [*base, "--iterations", "8"]
    assert main([*base, "--iterations", "4"]) == 0  # a first checkpoint, at iteration 4
    first = torch.load(out / CHECKPOINT, weights_only=False)
    original_save = torch.save

    def save_on_a_full_disk(state, path, *args, **kwargs):
        with open(path, "wb") as stream:
            stream.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(torch, "save", save_on_a_full_disk)
    capsys.readouterr()
    assert main(command) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0] and "again" in lines[0]
    kept = torch.load(out / CHECKPOINT, weights_only=False)
    assert kept["iteration"] == first["iteration"] == 4
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no temporary left
    monkeypatch.setattr(torch, "save", original_save)
    assert main(command) == 0  # space freed: the same command resumes and finishes
    assert torch.load(out / CHECKPOINT, weights_only=False)["iteration"] == 8


def test_a_full_disk_while_writing_samples_leaves_no_file(files, tmp_path, capsys, monkeypatch):
    target = tmp_path / "trees.nex"

    def write_on_a_full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", write_on_a_full_disk)
    assert main(["sample", str(files["run"]), "-n", "5", "-o", str(target), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0]
    assert list(tmp_path.iterdir()) == []


class FillingDisk:
    """A text file whose writes fail with ENOSPC after `room` characters, the last one torn."""

    def __init__(self, path, mode, room: int) -> None:
        self.stream, self.room = open(path, mode), room

    def write(self, text: str) -> int:
        if len(text) > self.room:
            self.stream.write(text[: self.room])
            self.stream.flush()
            raise OSError(errno.ENOSPC, "No space left on device", self.stream.name)
        self.room -= len(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.stream.close()


def test_a_full_disk_while_writing_metrics_keeps_the_checkpoint_and_the_fit_resumes(
    tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    command = [*FIT, "--out", str(out), "--particles", "3", "--eval-every", "0",
               "--eval-particles", "20", "--eval-repeats", "2", "--iterations", "2500"]  # fmt: skip
    import vbpi_mix.inference.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "open", lambda p, m: FillingDisk(p, m, 30_000),
                        raising=False)  # fmt: skip
    assert main(command) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "metrics.jsonl: No space left on device" in lines[0]
    stopped_at = torch.load(out / CHECKPOINT, weights_only=False)["iteration"]
    assert stopped_at in (1000, 2000)
    monkeypatch.undo()
    assert main(command) == 0
    iterations = [r["iteration"] for r in read_metrics(out) if "bound" in r]
    assert iterations == list(range(10, 2501, 10))  # the torn line and those after the
    # checkpoint dropped on resume, then written again: each iteration's line once
