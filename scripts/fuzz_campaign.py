#!/usr/bin/env python3
"""A long fuzz campaign, outside CI (docs/testing.md, "Fuzzing").

  .venv/bin/python scripts/fuzz_campaign.py --minutes 2 --examples 2000      # atheris, then hypothesis
  .venv/bin/python scripts/fuzz_campaign.py --target decoder -- -runs=100000 # one atheris target, libFuzzer args

1. atheris (coverage-guided, libFuzzer; `pip install atheris`) on the pure targets, each for
   --minutes: `decoder` (count_crop_frames against the protobuf parser), `envelope` (AES-GCM batch
   decryption with fuzzed key, session id, seq, nonce, ciphertext), `unwrap` (stored session keys) and
   `service` (any decrypted payload through SessionService on SQLite: an ack or INVALID_ARGUMENT).
   Crashes are written to <out>/crash-* by libFuzzer.
2. hypothesis: tests/test_fuzz.py with HYPOTHESIS_PROFILE=campaign and --examples per property
   (JSON-RPC and Connect/gRPC-web against a real server, plus the above).
Logs and a summary (inputs tried per target, findings) go to --out (artifacts/fuzz/).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("decoder", "envelope", "unwrap", "service")


def _target(name: str):  # noqa: ANN202
    """The function atheris calls with each input; only the listed exceptions are allowed."""
    import atheris

    with atheris.instrument_imports():
        from google.protobuf.message import DecodeError

        from affectline import crypto
        from affectline.services.crop_batch_wire import count_crop_frames
        from affectline.v1 import session_pb2

    if name == "decoder":
        def one(data: bytes) -> None:
            try:
                n = count_crop_frames(data, stop_after=64)
            except ValueError:
                return
            assert n <= 65
            if n > 64:
                return
            batch = session_pb2.CropBatch()
            try:
                batch.ParseFromString(data)
            except DecodeError:
                return
            assert len(batch.frames) == n, (n, len(batch.frames))
        return one
    if name == "envelope":
        def one(data: bytes) -> None:
            fdp = atheris.FuzzedDataProvider(data)
            key = fdp.ConsumeBytes(32).ljust(32, b"\0")
            session_id = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40))
            seq = fdp.ConsumeIntInRange(0, 2**64 - 1)
            nonce = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 20))
            try:
                crypto.decrypt_batch(key, session_id, seq, nonce, fdp.ConsumeBytes(fdp.remaining_bytes()))
            except crypto.DecryptionFailed:
                pass
        return one
    if name == "unwrap":
        wrapper = crypto.KeyWrapper(bytes(range(32)))

        def one(data: bytes) -> None:
            try:
                wrapper.unwrap(data, "session")
            except crypto.DecryptionFailed:
                pass
        return one
    if name == "service":
        import tempfile

        sys.path.insert(0, str(REPO / "tests"))
        from test_fuzz import Service  # the same in-process SessionService the property tests use

        service = Service(Path(tempfile.mkdtemp(prefix="affectline-fuzz-")))

        def one(data: bytes) -> None:
            _, ack = service.push_plaintext(data)
            assert ack is None or 1 <= len(ack.results) <= 8
        return one
    raise SystemExit(f"unknown target {name!r}; one of {', '.join(TARGETS)}")


def run_target(name: str, libfuzzer_args: list[str]) -> None:
    import atheris

    atheris.Setup([sys.argv[0], *libfuzzer_args], _target(name))
    atheris.Fuzz()


def campaign(minutes: float, examples: int, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    summary: list[str] = [f"fuzz campaign {time.strftime('%Y-%m-%d %H:%M:%S')}: atheris {minutes} min per target, "
                          f"hypothesis {examples} examples per property"]
    findings = 0
    try:
        import atheris  # noqa: F401
        have_atheris = True
    except ImportError:
        have_atheris = False
        summary.append("atheris: not installed (pip install atheris); skipped")
    for name in TARGETS if have_atheris else ():
        log = out / f"atheris-{name}.log"
        corpus = out / f"corpus-{name}"
        corpus.mkdir(exist_ok=True)
        with log.open("w") as f:
            rc = subprocess.run([sys.executable, __file__, "--target", name, "--",
                                 f"-max_total_time={int(minutes * 60)}", "-print_final_stats=1",
                                 f"-artifact_prefix={out}/crash-{name}-", str(corpus)],
                                stdout=f, stderr=subprocess.STDOUT, cwd=REPO).returncode
        text = log.read_text(errors="replace")
        runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", text)
        crashed = rc != 0
        findings += crashed
        summary.append(f"atheris {name}: {runs[-1] if runs else '?'} inputs, exit {rc}"
                       f"{' CRASH: see ' + str(log) if crashed else ', no crash'}")
    log = out / "hypothesis.log"
    env = {**os.environ, "HYPOTHESIS_PROFILE": "campaign", "AFFECTLINE_FUZZ_EXAMPLES": str(examples)}
    started = time.monotonic()
    with log.open("w") as f:
        rc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fuzz.py",
                             "--hypothesis-show-statistics"], stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=env).returncode
    text = log.read_text(errors="replace")
    tried = sum(int(n) for n in re.findall(r"(\d+) passing, \d+ failing", text))
    findings += rc != 0
    summary.append(f"hypothesis: {tried} passing examples over the properties in {time.monotonic() - started:.0f} s, "
                   f"exit {rc}{' FAILURES: see ' + str(log) if rc else ', no failure'}")
    summary.append(f"findings: {findings}")
    (out / "summary.txt").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    return 1 if findings else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="atheris time per target")
    parser.add_argument("--examples", type=int, default=20000, help="hypothesis examples per property")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "fuzz")
    parser.add_argument("--target", choices=TARGETS, help="run one atheris target (libFuzzer args after --)")
    args, rest = parser.parse_known_args()
    if args.target:
        run_target(args.target, [a for a in rest if a != "--"])
        return 0
    return campaign(args.minutes, args.examples, args.out)


if __name__ == "__main__":
    sys.exit(main())
