"""Log files that follow logrotate and cap their own size: nothing lost that is kept, the disk never full."""

from __future__ import annotations

import gzip
import json
import logging
import multiprocessing
import multiprocessing.synchronize
import subprocess
import sys
from pathlib import Path

import pytest

from shieldware.cli import main
from shieldware.decision import Decision, Verdict
from shieldware.decision_log import DecisionLog, find_decision, read_log, read_records
from shieldware.logfile import LogFile, rotated_files
from shieldware.proxy.access_log import AccessLogWriter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines_of(path: Path) -> list[str]:
    """Every line of a log and the files rotated from it, oldest first."""
    return [line for file in reversed(rotated_files(path)) for line in file.read_text().splitlines()]


def test_past_max_bytes_the_file_rotates_keeping_the_newest_files_in_order(tmp_path):
    path = tmp_path / "app.log"
    log = LogFile(path, max_bytes=1000, keep=3)
    written = [f"line {n:04d} " + "x" * 39 for n in range(200)]  # 50 bytes each: 10,000 bytes in all
    for line in written:
        log.write(f"{line}\n".encode())
    log.close()
    assert [p.name for p in rotated_files(path)] == ["app.log", "app.log.1", "app.log.2", "app.log.3"]
    assert not (tmp_path / "app.log.4").exists()
    # A file ends with the write that took it to max_bytes: whole lines, never a line cut in two.
    assert [p.stat().st_size for p in rotated_files(path)[1:]] == [1000, 1000, 1000]
    kept = lines_of(path)
    assert kept == written[-len(kept):] and len(kept) >= 60  # the newest lines, none missing, in order
    assert log.rotations == 10 and path.stat().st_size == 0  # the last line filled the tenth file exactly


def test_a_rename_by_logrotate_is_followed_within_a_second(tmp_path):
    path = tmp_path / "app.log"
    clock = Clock()
    log = LogFile(path, clock=clock)
    log.write(b"before\n")
    path.rename(tmp_path / "app.log.1")  # what logrotate does, before it would signal anyone
    clock.now += 0.5
    log.write(b"late\n")  # within the second: still the file it holds
    clock.now += 1.0
    log.write(b"after\n")
    assert (tmp_path / "app.log.1").read_text() == "before\nlate\n"
    assert path.read_text() == "after\n"
    path.unlink()  # deleted outright: made again
    clock.now += 1.0
    log.write(b"again\n")
    log.close()
    assert path.read_text() == "again\n"


def test_a_bad_cap_is_refused():
    with pytest.raises(ValueError, match="keep >= 1"):
        LogFile("/tmp/never-made.log", max_bytes=10, keep=0)


def _hammer(path: str, worker: int, lines: int, start: multiprocessing.synchronize.Barrier) -> None:
    log = LogFile(path, max_bytes=20_000, keep=1000)
    start.wait(30)  # all at once: the rotations race
    for n in range(lines):
        log.write(json.dumps({"worker": worker, "n": n, "pad": "p" * 60}).encode() + b"\n")
    log.close()


def test_workers_sharing_a_log_rotate_it_once_and_lose_no_line(tmp_path):
    path = tmp_path / "shared.log"
    context = multiprocessing.get_context("fork")
    start = context.Barrier(3)
    workers = [context.Process(target=_hammer, args=(str(path), w, 3000, start)) for w in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    records = [json.loads(line) for line in lines_of(path)]  # every line whole: no interleaving
    assert len(records) == 9000
    for w in range(3):
        assert [r["n"] for r in records if r["worker"] == w] == list(range(3000))  # in order, none lost
    # Rotated once each time the log filled: a worker that rotated again on its own count would
    # move the fresh file another worker had just begun, leaving a rotated file short of the cap.
    rotated = rotated_files(path)[1:]
    assert len(rotated) > 20 and all(file.stat().st_size >= 20_000 for file in rotated)


def _decision(n: int) -> Decision:
    return Decision(ref=f"abcdef-{n:07x}", verdict=Verdict.BLOCK, bot_score=90.0, reasons=(), route_group="pages",
                    time=1_800_000_000.0 + n, client_ip="203.0.113.7", method="GET", path=f"/product/{n}",
                    mode="enforce")


def test_explain_finds_decisions_in_rotated_and_compressed_files(tmp_path, caplog):
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(path, max_bytes=4000, keep=20)
    for n in range(100):
        log.write(_decision(n))
    log.close()
    files = rotated_files(path)
    assert len(files) > 3
    assert find_decision(path, "abcdef-0000000")["path"] == "/product/0"  # in the oldest file
    assert find_decision(path, "ABCDEF-0000063")["path"] == "/product/99"  # any case
    assert [r["path"] for r in read_log(path)] == [f"/product/{n}" for n in range(100)]
    oldest = files[-1]
    in_oldest = len(list(read_records(oldest)))
    with gzip.open(f"{oldest}.gz", "wb") as packed:  # logrotate's compress
        packed.write(oldest.read_bytes())
    oldest.unlink()
    assert find_decision(path, "abcdef-0000000")["path"] == "/product/0"
    damaged = Path(f"{oldest}.gz")
    damaged.write_bytes(damaged.read_bytes()[:-20])  # cut short, as an interrupted copy leaves it
    with caplog.at_level(logging.WARNING, logger="shieldware.decisions"):
        read = [r["path"] for r in read_log(path)]
    assert "damaged" in caplog.text
    later = 100 - in_oldest  # the records of every other file, all of them; the damaged one's up to the damage
    assert read[-later:] == [f"/product/{n}" for n in range(in_oldest, 100)]
    assert read[:-later] == [f"/product/{n}" for n in range(len(read) - later)]
    assert find_decision(path, "abcdef-fffffff") is None
    with pytest.raises(FileNotFoundError):
        find_decision(tmp_path / "no-such.jsonl", "abcdef-0000000")


def test_the_access_log_rotates_past_its_cap(tmp_path):
    path = tmp_path / "access.log"
    writer = AccessLogWriter(str(path), max_bytes=2000, keep=2)
    for n in range(100):
        writer.append(f'203.0.113.7 - - [05/Dec/2026:10:00:00 +0000] "GET /product/{n} HTTP/1.1" 200 5 "-" "-"\n')
    writer.close()
    assert [p.name for p in rotated_files(path)] == ["access.log", "access.log.1", "access.log.2"]
    kept = lines_of(path)
    assert kept[-1].endswith('"GET /product/99 HTTP/1.1" 200 5 "-" "-"') and len(kept) >= 20


def test_a_full_disk_loses_the_lines_but_never_fails_the_request(caplog):
    # /dev/full refuses every write with ENOSPC, as a full disk does.
    clock = Clock()
    log = LogFile("/dev/full", clock=clock)
    with caplog.at_level(logging.WARNING, logger="shieldware.logfile"):
        assert log.write(b"one\n") is False
        assert log.write(b"two\n") is False
        clock.now += 61
        assert log.write(b"three\n") is False
    log.close()
    assert log.failed_writes == 3
    warnings = [r.getMessage() for r in caplog.records if r.name == "shieldware.logfile"]
    assert len(warnings) == 2 and "3 writes lost" in warnings[1]  # said once a minute, not per line
    decisions = DecisionLog("/dev/full")
    decisions.write(_decision(1))  # no exception: the refusal it records is still answered
    decisions.close()
    unopenable = DecisionLog("/proc/no-such-dir/decisions.jsonl")
    with caplog.at_level(logging.ERROR, logger="shieldware.decisions"):
        unopenable.write(_decision(2))
        unopenable.write(_decision(3))
    assert unopenable.lost == 2 and caplog.text.count("cannot open decision log") == 1


@pytest.mark.parametrize(("option", "kind"), [("--access-log", "access log"), ("--decision-log", "decision log")])
def test_the_proxy_refuses_a_log_it_cannot_write_before_serving(option, kind, capsys, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # a file where a directory should be: nothing can be made under it
    assert main(["proxy", "--upstream", "http://127.0.0.1:9", option, str(blocked / "shieldware.log")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"shieldware proxy: cannot write the {kind} {blocked / 'shieldware.log'}: ")
    assert "Traceback" not in err and "shieldware proxy on" not in err


def test_an_access_log_on_a_closed_stdout_loses_lines_but_the_proxy_goes_on():
    # `--access-log -` piped into a reader that went away: every write meets EPIPE.
    script = ("import sys, time; time.sleep(0.5)\n"
              "from shieldware.proxy.access_log import AccessLogWriter\n"
              "writer = AccessLogWriter('-')\n"
              "for n in range(3):\n"
              "    writer.append(f'line {n}\\n'); writer.flush()\n"
              "writer.close()\n"
              "print('served on', writer._file.failed_writes, file=sys.stderr)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             cwd=Path(__file__).resolve().parent.parent)
    child.stdout.close()  # the reader goes away before the first line
    _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err.decode()
    assert b"served on 3" in err and err.count(b"cannot write log -") == 1
