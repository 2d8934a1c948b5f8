"""The command line: output format, and one-line errors with non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import dendropy
import numba
import pytest
import torch

from tests.conftest import EXAMPLE_FASTA, EXAMPLE_TREE, REPO_ROOT
from vbpi_mix import cli
from vbpi_mix.cli import main
from vbpi_mix.errors import VbpiMixError
from vbpi_mix.inference.runs import ModelConfig
from vbpi_mix.io.tree_files import read_tree_file
from vbpi_mix.phylo.alignment import load_alignment
from vbpi_mix.trees.conversions import topology_from_dendropy
from vbpi_mix.trees.support import build_support


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vbpi_mix.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_loglik_prints_index_and_value(capsys):
    assert main(["loglik", str(EXAMPLE_FASTA), str(EXAMPLE_TREE), "--quiet"]) == 0
    index, value = capsys.readouterr().out.strip().split("\t")
    assert index == "1"
    assert -20000 < float(value) < -1000


def test_threads_sizes_both_pools_leaves_values_alone_and_refuses_too_many(capsys):
    """Each tree is computed by one thread, so the thread count cannot change a value."""
    command = ["loglik", str(EXAMPLE_FASTA), str(EXAMPLE_TREE), "--quiet"]
    assert main(command) == 0
    expected = capsys.readouterr().out
    before = numba.get_num_threads(), torch.get_num_threads()
    try:
        assert main([*command, "--threads", "1"]) == 0
        assert (numba.get_num_threads(), torch.get_num_threads()) == (1, 1)
    finally:
        numba.set_num_threads(before[0])
        torch.set_num_threads(before[1])
    assert capsys.readouterr().out == expected
    assert main([*command, "--threads", str(numba.config.NUMBA_NUM_THREADS + 1)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("vbpi-mix: error: --threads")


def test_loglik_on_cuda_prints_the_cpu_values(tmp_path, capsys):
    """--likelihood-device cuda (on a GPU, or in numba's CUDA simulator: conftest.py) gives
    the CPU kernel's values to the printed digits; 5 taxa keep the simulator quick."""
    pytest.importorskip("vbpi_mix.phylo.cuda_pruning", reason="numba has no CUDA target here")
    fasta, trees = tmp_path / "five.fasta", tmp_path / "two.nwk"
    sequences = ["ACGTACGTTA", "ACGTTCGTTA", "ACCTACGATA", "TCGTACGTTG", "ACGAACGTTA"]
    fasta.write_text("".join(f">t{i}\n{s}\n" for i, s in enumerate(sequences)))
    trees.write_text(
        "((t0:0.1,t1:0.2):0.05,(t2:0.3,t3:0.1):0.2,t4:0.4);\n"
        "((t0:0.1,t2:0.2):0.05,(t1:0.3,t4:0.1):0.2,t3:0.4);\n"
    )
    printed = {}
    for device in ("cpu", "cuda"):
        command = ["loglik", str(fasta), str(trees), "--quiet", "--likelihood-device", device]
        assert main(command) == 0
        printed[device] = capsys.readouterr().out
    assert printed["cuda"] == printed["cpu"]
    assert len(printed["cpu"].splitlines()) == 2


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_likelihood_device_cuda_without_a_gpu_is_a_one_line_error():
    """No GPU, or no CUDA target in numba at all: one line naming the fix."""
    environment = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    command = [sys.executable, "-m", "vbpi_mix.cli", "loglik", str(EXAMPLE_FASTA),
               str(EXAMPLE_TREE), "--quiet", "--likelihood-device", "cuda"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1
    assert "numba finds no CUDA GPU" in result.stderr or "pip install numba-cuda" in result.stderr
    assert result.stdout == ""


def test_loglik_json_many_trees_and_models(tmp_path, capsys):
    tree = EXAMPLE_TREE.read_text().strip()
    scaled = tree.replace(":0.", ":0.0")  # same topology, shorter branches
    trees = tmp_path / "two.nwk"
    trees.write_text(f"{tree}\n{scaled}\n")
    assert main(["loglik", str(EXAMPLE_FASTA), str(trees), "--json", "--quiet"]) == 0
    jc = json.loads(capsys.readouterr().out)
    assert [r["tree"] for r in jc] == [1, 2]
    assert jc[0]["log_likelihood"] != jc[1]["log_likelihood"]
    args = ["--model", "GTR", "--rates", "1,2,1,1,2,1", "--freqs", "1,1,1,1",
            "--gamma-categories", "4", "--alpha", "100"]  # fmt: skip
    assert main(["loglik", str(EXAMPLE_FASTA), str(trees), "--json", "--quiet", *args]) == 0
    gtr = json.loads(capsys.readouterr().out)
    assert gtr[0]["log_likelihood"] != pytest.approx(jc[0]["log_likelihood"], abs=1e-3)


def test_freqs_empirical_is_the_counted_frequencies_in_loglik_and_in_a_fit_config(capsys):
    """`--freqs empirical` gives loglik the same value as the counted numbers typed in, and a
    fit's model reads them from its alignment, labelled +F as IQ-TREE writes it."""
    counted = load_alignment(EXAMPLE_FASTA).empirical_frequencies()
    base = ["loglik", str(EXAMPLE_FASTA), str(EXAMPLE_TREE), "--quiet", "--model", "HKY"]
    assert main([*base, "--freqs", "empirical"]) == 0
    empirical = capsys.readouterr().out
    assert main([*base, "--freqs", ",".join(repr(f) for f in counted)]) == 0
    typed = capsys.readouterr().out
    assert float(empirical.split()[1]) == pytest.approx(float(typed.split()[1]), abs=1e-9)
    model = ModelConfig(alignment=str(EXAMPLE_FASTA), substitution_model="GTR",
                        frequencies="empirical", gamma_categories=4, alpha=0.5)  # fmt: skip
    assert model.model_label() == "GTR+F+G4"
    frequencies = model.substitution(load_alignment(EXAMPLE_FASTA)).frequencies
    torch.testing.assert_close(frequencies, torch.tensor(counted, dtype=torch.float64))


def test_loglik_reads_nexus_trees_with_translate_block(tmp_path, capsys):
    assert main(["loglik", str(EXAMPLE_FASTA), str(EXAMPLE_TREE), "--quiet"]) == 0
    newick_value = float(capsys.readouterr().out.split("\t")[1])
    trees = dendropy.TreeList.get(
        path=str(EXAMPLE_TREE), schema="newick", preserve_underscores=True
    )
    nexus = tmp_path / "trees.nex"
    trees.write(path=str(nexus), schema="nexus", translate_tree_taxa=True)
    assert "TRANSLATE" in nexus.read_text().upper()
    assert main(["loglik", str(EXAMPLE_FASTA), str(nexus), "--quiet"]) == 0
    assert float(capsys.readouterr().out.split("\t")[1]) == pytest.approx(newick_value, abs=1e-6)


@pytest.mark.parametrize(
    ("make_trees", "extra", "message"),
    [
        (
            lambda t: t.replace("taxon_01", "taxon_99"),
            [],
            "missing from the tree: taxon_01; not in the alignment: taxon_99",
        ),
        (lambda t: "((a,b),(c,d));", [], "missing from the tree"),
        (lambda t: "this is not a tree (", [], "cannot parse"),
        (lambda t: t, ["--kappa", "2"], "--kappa applies to K80 and HKY"),
        (lambda t: t, ["--alpha", "0.5"], "--alpha needs --gamma-categories"),
    ],
)
def test_loglik_errors_are_one_line(tmp_path, make_trees, extra, message):
    trees = tmp_path / "trees.nwk"
    trees.write_text(make_trees(EXAMPLE_TREE.read_text()))
    result = run_cli("loglik", str(EXAMPLE_FASTA), str(trees), *extra)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vbpi-mix: error:")
    assert re.search(message, lines[0])


def test_missing_branch_lengths_and_missing_alignment(tmp_path):
    trees = tmp_path / "topology.nwk"
    trees.write_text("(" + ",".join(f"taxon_{i:02d}" for i in range(1, 16)) + ",taxon_16);")
    result = run_cli("loglik", str(EXAMPLE_FASTA), str(trees))
    assert result.returncode == 2 and "polytomy" in result.stderr
    result = run_cli("loglik", str(tmp_path / "nope.fasta"), str(EXAMPLE_TREE))
    assert result.returncode == 2 and "nope.fasta: no such file" in result.stderr


def test_bad_option_value_and_help():
    result = run_cli("loglik", str(EXAMPLE_FASTA), str(EXAMPLE_TREE), "--freqs", "1,2,3")
    assert result.returncode == 2 and "4 positive comma-separated numbers" in result.stderr
    help_text = run_cli("loglik", "--help").stdout
    for option in (
        "--model",
        "--kappa",
        "--freqs",
        "--rates",
        "--gamma-categories",
        "--alpha",
        "--json",
    ):
        assert option in help_text


@pytest.mark.skipif(shutil.which("iqtree2") is None, reason="IQ-TREE (iqtree2) not installed")
def test_support_runs_iqtree_and_finds_the_true_topology(tmp_path):
    result = run_cli(
        "support", str(EXAMPLE_FASTA), "-o", str(tmp_path), "--replicates", "2",
        "--bootstrap", "1000", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    paths = sorted(tmp_path.glob("rep_*.ufboot.gz"))
    assert [p.name for p in paths] == ["rep_1.ufboot.gz", "rep_2.ufboot.gz"]
    taxa = load_alignment(EXAMPLE_FASTA).taxa
    support = build_support(paths, taxa, progress=False)
    truth = topology_from_dendropy(read_tree_file(EXAMPLE_TREE)[0], taxa)[0]
    assert support.topologies[0] == truth  # the simulation's tree is the most frequent
    assert sum(support.counts) >= 0.95 * 2000


def test_support_without_iqtree_says_how_to_install(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PATH"}
    env["PATH"] = str(tmp_path)  # no iqtree2 here
    result = subprocess.run(
        [sys.executable, "-m", "vbpi_mix.cli", "support", str(EXAMPLE_FASTA), "-o", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "apt-get install iqtree" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("rep_*"))


def test_support_rejects_too_few_bootstrap_trees(tmp_path):
    result = run_cli("support", str(EXAMPLE_FASTA), "-o", str(tmp_path), "--bootstrap", "500")
    assert result.returncode == 2 and "at least 1000" in result.stderr


@pytest.mark.parametrize("lost_in", ["a __del__ method", "a numba dispatcher"])
def test_an_interrupt_whose_keyboardinterrupt_was_lost_still_stops_with_one_line(
    lost_in, monkeypatch, capsys
):
    """Ctrl-C or SIGTERM recorded by the signal handler, its KeyboardInterrupt lost: swallowed
    (Python ignores exceptions in __del__ and reports them, and the command then ends
    normally) or turned into a SystemError by a numba dispatcher. Either way exit 130, one
    line, and no report of the ignored exception; without an interrupt, a SystemError stays
    an error and ignored exceptions are reported as before."""
    reports = []
    monkeypatch.setattr(sys, "unraisablehook", reports.append)

    class FailingFinalizer:
        def __del__(self):
            raise KeyboardInterrupt  # as the handler's exception, landed in a finalizer

    def interrupted_command(args, stop):
        stop.set()
        FailingFinalizer()  # dropped at once: its __del__ runs here
        if lost_in == "a numba dispatcher":
            raise SystemError("CPUDispatcher(...) returned a result with an exception set")
        return 0

    monkeypatch.setattr(cli, "run_loglik", interrupted_command)
    assert main(["loglik", str(EXAMPLE_FASTA), str(EXAMPLE_TREE), "--quiet"]) == 130
    assert capsys.readouterr().err.splitlines() == ["vbpi-mix: interrupted"]
    assert reports == []

    def failing_command(args, stop):
        FailingFinalizer()
        raise SystemError("a bug")

    monkeypatch.setattr(cli, "run_loglik", failing_command)
    with pytest.raises(SystemError, match="a bug"):
        main(["loglik", str(EXAMPLE_FASTA), str(EXAMPLE_TREE), "--quiet"])
    assert len(reports) == 1 and reports[0].exc_type is KeyboardInterrupt


def test_the_signal_handler_sets_the_stop_event_and_raises_only_without_safe_points():
    """Commands with safe points (fit, evaluate, sample, summarize, bench) get only the stop
    event set, which their library calls read between units of work; the others (loglik,
    support) also get a KeyboardInterrupt at once. A stop event set by the handler ends the
    command with exit status 130 and one line."""
    stop = threading.Event()
    with pytest.raises(KeyboardInterrupt):
        cli.stop_handler(stop, at_safe_points=False)(signal.SIGTERM, None)
    assert stop.is_set()
    stop = threading.Event()
    cli.stop_handler(stop, at_safe_points=True)(signal.SIGINT, None)
    assert stop.is_set()
    parser = cli.build_parser()
    deferring = {
        name for name, arguments in [
            ("loglik", ["a", "b"]), ("support", ["a", "-o", "b"]), ("fit", ["a", "--out", "b"]),
            ("evaluate", ["a"]), ("sample", ["a", "-n", "1", "-o", "b"]), ("summarize", ["a"]),
            ("bench", ["DS1", "--out", "b"]),
        ]
        if getattr(parser.parse_args([name, *arguments]), "safe_points", False)
    }  # fmt: skip
    assert deferring == {"fit", "evaluate", "sample", "summarize", "bench"}


def test_sigterm_stops_like_ctrl_c_and_keeps_the_run_resumable(tmp_path):
    """A killed fit (SIGTERM) exits 130 with one line and leaves no half-written file."""
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "vbpi_mix.cli", "fit", str(EXAMPLE_FASTA), "--support-dir",
         str(REPO_ROOT / "data" / "example_support"), "--out", str(out), "--iterations",
         "100000", "--quiet"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not (out / "metrics.jsonl").is_file() and time.monotonic() < deadline:
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr.strip().splitlines() == ["vbpi-mix: interrupted"]
    assert not [path for path in out.iterdir() if path.name.endswith(".tmp")]
    checkpoint = out / "checkpoint.pt"
    if checkpoint.is_file():  # the last periodic checkpoint, whole
        assert torch.load(checkpoint, weights_only=False)["iteration"] >= 0


def test_importing_the_command_line_loads_no_numerical_library():
    """`vbpi-mix --help` must start at once: torch, numba, numpy, matplotlib, ete3 (with
    scipy), Biopython and DendroPy take seconds together; each command imports what it
    uses when it runs."""
    heavy = ["Bio", "dendropy", "ete3", "matplotlib", "numba", "numpy", "scipy", "torch"]
    code = f"import sys, vbpi_mix.cli; print(sorted(set({heavy}) & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_registry_offers_exactly_the_names_the_command_line_lists():
    from vbpi_mix import choices
    from vbpi_mix.bench.protocols import PROTOCOLS
    from vbpi_mix.inference.estimators import ESTIMATORS, GRADIENTS
    from vbpi_mix.phylo.models import build_model

    assert tuple(ESTIMATORS) == choices.ESTIMATOR_NAMES
    assert tuple(GRADIENTS) == choices.GRADIENT_NAMES
    assert tuple(sorted(PROTOCOLS)) == tuple(sorted(choices.PROTOCOL_NAMES))
    for name in choices.MODEL_NAMES:
        build_model(name)  # every listed model is built; an unlisted one is refused
    with pytest.raises(VbpiMixError, match="unknown model"):
        build_model("F81")


def test_the_package_exports_its_api_on_first_use():
    code = (
        "import sys, vbpi_mix; loaded = 'torch' in sys.modules; "
        "from vbpi_mix import ModelConfig, Posterior, TrainingConfig, workflows; "
        "from vbpi_mix.inference.runs import ModelConfig as M; "
        "print(loaded, ModelConfig is M, callable(workflows.fit), sorted(vbpi_mix.__all__))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(" ", 3)[:3] == ["False", "True", "True"]
