"""Shell completion through Click's own mechanism (``_PWFILTER_COMPLETE``): kernel names
after ``convolve`` and ``--depthwise``, presets after ``--matrix``/``--pointwise``, files
elsewhere; the scripts for bash, zsh and fish; bash's own completion function end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

KERNELS = {"gaussian:", "box:", "identity", "sharpen", "laplacian", "sobel-x", "sobel-y",
           "emboss", "lowpass:", "highpass:", "bandpass:"}
PRESETS = {"gray", "sepia", "bgr", "invert", "mono", "stereo", "swap", "mid-side", "side-mid"}


def env(**extra) -> dict:
    e = dict(os.environ, **extra)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    return e


@pytest.fixture
def complete(monkeypatch):
    """complete(words) -> (type, value) pairs pwfilter offers for the last of ``words``, read
    by Click's completion class from COMP_WORDS and COMP_CWORD as bash sets them (in this
    process)."""
    from click.shell_completion import get_completion_class

    from pwfilter.cli import cli

    def offered(words: str, shell: str = "bash") -> list[tuple[str, str]]:
        monkeypatch.setenv("COMP_WORDS", words)
        monkeypatch.setenv("COMP_CWORD", str(len(words.split(" ")) - 1))
        out = get_completion_class(shell)(cli, {}, "pwfilter", "_PWFILTER_COMPLETE").complete()
        return [tuple(line.split(",", 1)) for line in out.splitlines()]

    return offered


def complete_in_a_process(words: str, shell: str = "bash") -> list[str]:
    """The lines a real ``pwfilter`` process prints under ``_PWFILTER_COMPLETE``."""
    argv = words.split(" ")
    proc = subprocess.run([sys.executable, "-m", "pwfilter"], capture_output=True, timeout=30,
                          env=env(_PWFILTER_COMPLETE=f"{shell}_complete", COMP_WORDS=words,
                                  COMP_CWORD=argv[-1] if shell == "fish" else
                                  str(len(argv) - 1)))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().splitlines()


def plain(items) -> set[str]:
    return {v for t, v in items if t == "plain"}


@pytest.mark.parametrize("words,expected", [
    ("pwfilter convolve x.png gau", {"gaussian:"}),
    ("pwfilter convolve x.png a.wav LOW", {"lowpass:"}),
    ("pwfilter convolve x.png ", KERNELS),
    ("pwfilter convolve x.png so", {"sobel-x", "sobel-y"}),
    ("pwfilter dsconv x.png --depthwise s", {"sharpen", "sobel-x", "sobel-y"}),
    ("pwfilter remix x.wav --matrix m", {"mono", "mid-side"}),
    ("pwfilter remix x.png --matrix ", {"gray", "sepia", "bgr", "invert"}),
    ("pwfilter remix x.wav --matrix ", {"mono", "stereo", "swap", "mid-side", "side-mid"}),
    ("pwfilter remix x.npy --matrix ", PRESETS),  # an image or a signal
    ("pwfilter remix x.png y.wav --matrix ", PRESETS),
    ("pwfilter remix --matrix ", PRESETS),  # no input yet
    ("pwfilter dsconv x.png --depthwise box:3 --pointwise se", {"sepia"}),
    ("pwfilter dsconv x.png --depthwise box:3 --pointwise s", {"sepia"}),  # not stereo, swap
    ("pwfilter kernel high", {"highpass:"}),
    ("pwfilter chain x.png -- convolve ", set()),
    ("pwfilter blur x", set()),
    ("pwfilter convolve gau", set()),  # the first word is an input: files only
])
def test_names_offered(complete, words, expected):
    items = complete(words)
    assert plain(items) == expected
    # files stay completable everywhere (bash uses them when no name matches)
    assert items[0] == ("file", words.rsplit(" ", 1)[1])


def test_choices_and_commands_complete_too(complete):
    assert plain(complete("pwfilter con")) == {"convolve"}
    assert plain(complete("pwfilter blur x.png --kind ")) == {"gaussian", "box"}


def test_a_real_process_completes_for_bash_zsh_and_fish():
    """The environment variables Click's scripts set, read by the ``pwfilter`` command."""
    assert complete_in_a_process("pwfilter convolve x.png gau") == ["file,gau", "plain,gaussian:"]
    out = complete_in_a_process("pwfilter convolve x.png gau", "zsh")
    assert out[out.index("plain") + 1:out.index("plain") + 3] == ["gaussian\\:",
                                                                  "gaussian:SIGMA"]
    out = complete_in_a_process("pwfilter dsconv x.wav --pointwise mid", "fish")
    assert "plain,mid-side\taudio preset" in out


@pytest.mark.parametrize("shell,marker", [
    ("bash", "complete -o nosort -F _pwfilter_completion pwfilter"),
    ("zsh", "#compdef pwfilter"), ("fish", "complete --no-files --command pwfilter"),
])
def test_the_start_up_line_sources_a_script(shell, marker):
    """What ``eval "$(_PWFILTER_COMPLETE=bash_source pwfilter)"`` (and the zsh and fish
    lines of the README) load."""
    proc = subprocess.run([sys.executable, "-m", "pwfilter"], capture_output=True, timeout=30,
                          env=env(_PWFILTER_COMPLETE=f"{shell}_source"))
    assert proc.returncode == 0 and marker in proc.stdout.decode()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_through_the_sourced_script(tmp_path):
    """The README's bash line in a real bash: the function it defines fills COMPREPLY."""
    wrapper = tmp_path / "pwfilter"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pwfilter "$@"\n')
    wrapper.chmod(0o755)
    script = ('eval "$(_PWFILTER_COMPLETE=bash_source pwfilter)"\n'
              "COMP_WORDS=(pwfilter remix in.wav --matrix mi); COMP_CWORD=4\n"
              "_pwfilter_completion pwfilter 2>/dev/null\n"
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True,
                          timeout=60, env=env(PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().split() == ["mid-side"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("words, cword, reply, nospace", [
    ("pwfilter convolve in.png gau", 3, ["gaussian:"], True),
    ("pwfilter kernel low", 2, ["lowpass:"], True),
    ("pwfilter remix in.wav --matrix mi", 4, ["mid-side"], False),
])
def test_bash_adds_no_space_after_a_name_that_takes_a_number(tmp_path, words, cword, reply,
                                                             nospace):
    """``gaussian:`` completes without bash's trailing space (its number follows at
    once); a whole name such as ``mid-side`` keeps it. ``compopt`` is bash's builtin for
    that, here replaced by a function that records its arguments."""
    wrapper = tmp_path / "pwfilter"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pwfilter "$@"\n')
    wrapper.chmod(0o755)
    script = ('eval "$(_PWFILTER_COMPLETE=bash_source pwfilter)"\n'
              'compopt() { echo "compopt $1 $2" >&2; }\n'
              f"COMP_WORDS=({words}); COMP_CWORD={cword}\n"
              "_pwfilter_completion pwfilter\n"
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True,
                          timeout=60, env=env(PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().split() == reply
    assert ("compopt -o nospace" in proc.stderr.decode()) == nospace, proc.stderr
