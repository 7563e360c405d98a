"""The `affectline` command line."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from affectline.commands.flags import add_db_flags
from affectline.config import Settings, env_table, settings_from_env

EPILOG = "Every option also reads an environment variable; flags win. Defaults:\n" + "\n".join(
    f"  {name:34} {default}" for name, default in env_table()
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="affectline",
        description="Affectline: moment-by-moment audience emotion measurement for media testing "
        "with informed consent (not for workplaces or schools: EU AI Act art. 5).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gRPC and HTTP servers (applies migrations first)",
                           formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    serve.add_argument("--host", help="address to bind both servers to [AFFECTLINE_HOST]")
    serve.add_argument("--grpc-port", type=int, help="native gRPC port [AFFECTLINE_GRPC_PORT]")
    serve.add_argument("--http-port", type=int, help="gRPC-web/Connect/JSON-RPC/metrics/pages port [AFFECTLINE_HTTP_PORT]")
    add_db_flags(serve)
    serve.add_argument("--tls-cert", help="PEM certificate (chain): TLS on both ports [AFFECTLINE_TLS_CERT]")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert [AFFECTLINE_TLS_KEY]")
    serve.add_argument("--tls-client-ca", help="PEM CA: native gRPC requires client certificates it signed "
                       "(mTLS) [AFFECTLINE_TLS_CLIENT_CA]")
    serve.add_argument("--allow-plaintext", action="store_const", const=1,
                       help="serve plaintext on a non-loopback --host (a proxy in front terminates TLS); "
                            "logged as a warning [AFFECTLINE_ALLOW_PLAINTEXT]")
    serve.add_argument("--model", help="registered model NAME[/VERSION] [AFFECTLINE_MODEL]")
    serve.add_argument("--model-variant", choices=("auto", "fp32", "fp16", "int8"),
                       help="precision variant of the model [AFFECTLINE_MODEL_VARIANT]")
    serve.add_argument("--time-variants", type=int, choices=(0, 1),
                       help="with --model-variant auto on CPU: 1 times the variants at start-up and serves the "
                            "fastest here; 0 uses the manifest's figures [AFFECTLINE_TIME_VARIANTS]")
    serve.add_argument("--max-batch-size", type=int, help="most crops per model run [AFFECTLINE_MAX_BATCH_SIZE]")
    serve.add_argument("--max-queue-delay-ms", type=float,
                       help="longest a crop waits for a fuller batch [AFFECTLINE_MAX_QUEUE_DELAY_MS]")
    serve.add_argument("--max-run-ms", type=float,
                       help="longest one model run of max batch size may take, timed at start-up; a slower model "
                            "gets a smaller max batch, 0 = no cap [AFFECTLINE_MAX_RUN_MS]")
    serve.add_argument("--max-queued-crops", type=int,
                       help="queue bound; past it PushCrops gets RESOURCE_EXHAUSTED [AFFECTLINE_MAX_QUEUED_CROPS]")
    serve.add_argument("--inference-workers", type=int, help="concurrent model runs [AFFECTLINE_INFERENCE_WORKERS]")
    serve.add_argument("--inference-runs-per-worker", type=int,
                       help="batches handed to each worker at once [AFFECTLINE_INFERENCE_RUNS_PER_WORKER]")
    serve.add_argument("--inference-threads", type=int,
                       help="onnxruntime threads per run, 0 = its default [AFFECTLINE_INFERENCE_THREADS]")
    serve.add_argument("--inference-spin", type=int, choices=(0, 1),
                       help="1: onnxruntime threads busy-wait between runs; 0: they sleep [AFFECTLINE_INFERENCE_SPIN]")
    serve.add_argument("--smoothing", help="'ema:<tau ms>' or 'none' [AFFECTLINE_SMOOTHING]")
    serve.add_argument("--send-pacing", type=int, choices=(0, 1),
                       help="1: tell each session when to send its next batch, spreading sessions evenly over "
                            "their batch period; 0: no hints [AFFECTLINE_SEND_PACING]")

    db = sub.add_parser("db", help="database schema commands")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    up = db_sub.add_parser("upgrade", help="apply Alembic migrations up to the latest (or --revision)")
    add_db_flags(up)
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    cur = db_sub.add_parser("current", help="print the schema revision of the database")
    add_db_flags(cur)
    parts = db_sub.add_parser(
        "partitions", help="list the day partitions of `batches` (PostgreSQL), making the next days' first",
        description="Lists each day partition of `batches` with its batches, frames and bytes. The server makes "
                    "today's and tomorrow's partitions itself; --ahead makes more (e.g. before a big campaign).")
    add_db_flags(parts)
    parts.add_argument("--ahead", type=int, default=1, metavar="DAYS",
                       help="make the partitions of today and the next DAYS days first (default: 1)")

    classify = sub.add_parser(
        "classify", help="run the expression model on face images",
        description="Prints, per image: file, predicted label and the 7 probabilities. Images that are "
        "not already tight face crops go through a face detector first.",
    )
    classify.add_argument("paths", nargs="+", type=Path, metavar="IMAGE_OR_DIR")
    classify.add_argument("--format", choices=("csv", "json"), default="csv", help="output format (default: csv)")
    classify.add_argument("--model", help="registered model NAME[/VERSION] (default: the server's default model)")


    models = sub.add_parser("models", help="list the registered models, their measured accuracy and which one is served",
                            description="Lists the registered models (tab-separated) with their FER2013 accuracy "
                                        "and precision variants; * marks the one `serve` and `classify` use.")
    models.add_argument("--retired", action="store_true",
                        help="list the models that left the package: their figures and the git command restoring each")
    models.set_defaults(models_command="list")

    for module, adders in _command_modules():
        for add in adders:
            before = set(sub.choices)
            add(sub)
            for name in set(sub.choices) - before:  # the commands this module just defined
                sub.choices[name].set_defaults(run=module.run)
    return parser


def _command_modules() -> list[tuple[ModuleType, tuple[Callable[[Any], Any], ...]]]:
    """Subcommands that live in modules of their own: each defines its parsers and `run(args)`."""
    from affectline import dev_certs
    from affectline.commands import analytics, analyze_video, keys, loadtest, privacy, report, videos
    from affectline.training import cli as training_cli

    plain = (videos, analyze_video, analytics, report, keys, privacy, dev_certs, loadtest)
    return [(m, (m.add_parser,)) for m in plain] + [
        (training_cli, (training_cli.add_parser, training_cli.add_evaluate_parser))]


def _settings(args: argparse.Namespace) -> Settings:
    return settings_from_env().with_overrides(
        host=getattr(args, "host", None),
        grpc_port=getattr(args, "grpc_port", None),
        http_port=getattr(args, "http_port", None),
        database_url=getattr(args, "database_url", None),
        tls_cert=getattr(args, "tls_cert", None),
        tls_key=getattr(args, "tls_key", None),
        tls_client_ca=getattr(args, "tls_client_ca", None),
        allow_plaintext=getattr(args, "allow_plaintext", None),
        data_dir=getattr(args, "data_dir", None),
        model=getattr(args, "model", None),
        model_variant=getattr(args, "model_variant", None),
        time_variants=getattr(args, "time_variants", None),
        max_batch_size=getattr(args, "max_batch_size", None),
        max_queue_delay_ms=getattr(args, "max_queue_delay_ms", None),
        max_run_ms=getattr(args, "max_run_ms", None),
        max_queued_crops=getattr(args, "max_queued_crops", None),
        inference_workers=getattr(args, "inference_workers", None),
        inference_threads=getattr(args, "inference_threads", None),
        inference_runs_per_worker=getattr(args, "inference_runs_per_worker", None),
        smoothing=getattr(args, "smoothing", None),
        send_pacing=getattr(args, "send_pacing", None),
        inference_spin=getattr(args, "inference_spin", None),
    )


def _serve(settings: Settings) -> int:
    from affectline.app import AffectlineServer, build_parts
    from affectline.tls import transport_security

    transport_security(settings)  # TLS files and the plaintext rule: fail before the slow start

    async def main() -> None:
        print(f"affectline: preparing (database, migrations, model {settings.model})...", file=sys.stderr, flush=True)
        parts = build_parts(settings)
        if settings.demo_data:  # a synthetic campaign for /dashboard, on first start (demo_campaign.py)
            from affectline.demo_campaign import ensure_demo_campaign

            ensure_demo_campaign(parts.store, settings.data_dir)
        server = AffectlineServer(parts)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        # Everything built so far (modules, model, app) lives as long as the process. Moving it
        # out of the collector's reach keeps full collections short: measured under 40 sessions,
        # one full collection over the ~134k startup objects paused the event loop for 95 ms,
        # which alone broke the 100 ms p99; after freeze() the longest pause was 1 ms.
        gc.collect()
        gc.freeze()
        print(
            f"affectline: serving gRPC on {settings.host}:{server.grpc_port} and "
            f"{'https' if server.tls.enabled else 'http'}://{settings.host}:{server.http_port}/ (Ctrl-C stops)",
            file=sys.stderr, flush=True,
        )
        try:
            await stop.wait()
        finally:
            print("affectline: stopping (finishing in-flight batches)...", file=sys.stderr, flush=True)
            await server.stop()

    asyncio.run(main())
    return 0


def _db(args: argparse.Namespace, settings: Settings) -> int:
    from affectline.storage.database import current_revision, make_engine, redact_url, upgrade

    url = settings.resolved_database_url
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    try:
        if args.db_command == "upgrade":
            before = current_revision(engine)
            upgrade(engine, args.revision)
            print(f"{redact_url(url)}: {before or '(empty)'} -> {current_revision(engine)}")
        elif args.db_command == "partitions":
            return _db_partitions(engine, args.ahead)
        else:
            print(current_revision(engine) or "(empty: run `affectline db upgrade`)")
    finally:
        engine.dispose()
    return 0


def _db_partitions(engine: Engine, ahead: int) -> int:
    from sqlalchemy import text

    from affectline.storage import partitions

    if engine.dialect.name != "postgresql":
        print("affectline: day partitions exist on PostgreSQL only; this database is "
              f"{engine.dialect.name} (one plain `batches` table)", file=sys.stderr)
        return 2
    if ahead < 0:
        print("affectline: --ahead must be 0 or more", file=sys.stderr)
        return 2
    partitions.DayPartitions(engine, ahead_days=ahead).prepare()
    print(f"{'partition':<20} {'batches':>10} {'frames':>12} {'bytes':>14}")
    with engine.connect() as conn:
        for name in sorted(partitions.partition_tables(conn)):
            count, frames, size = conn.execute(text(
                f"SELECT count(*), coalesce(sum(frames), 0), pg_total_relation_size('{name}') FROM {name}")).one()
            print(f"{name:<20} {count:>10,} {frames:>12,} {size:>14,}")
    return 0


def _classify(args: argparse.Namespace, settings: Settings) -> int:
    from affectline.classify import classify_files, write_results
    from affectline.inference.engine import EmotionModel
    from affectline.models.registry import ModelRegistry

    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        print(f"affectline classify: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    model = EmotionModel.load(ModelRegistry(settings.models_root).get(settings.model))
    results = list(classify_files(list(args.paths), model))
    write_results(results, args.format, sys.stdout)
    failed = sum(1 for r in results if r.error)
    no_face = sum(1 for r in results if r.error is None and not r.face_found)
    print(f"affectline classify: {len(results)} images, {no_face} without a face, {failed} unreadable "
          f"(model {model.key}, {model.variant})", file=sys.stderr)
    return 1 if results and failed == len(results) else 0


def _models(args: argparse.Namespace, settings: Settings) -> int:
    from affectline.models.registry import ModelRegistry, retired_models

    def percent(value: object) -> str:
        return f"{value * 100:.2f} %" if isinstance(value, (int, float)) else "n/a"

    if args.retired:
        print("model\tPrivateTest\tPublicTest\thappy-vs-sad (Private)\trestore")
        for r in retired_models():
            acc = r["accuracy"]
            print(f"{r['model']}\t{percent(acc.get('fer2013_private_test'))}\t{percent(acc.get('fer2013_public_test'))}\t"
                  f"{percent(acc.get('fer2013_private_test_happy_vs_sad'))}\t{r['restore']}")
        return 0
    registry = ModelRegistry(settings.models_root)
    served = registry.get(settings.model).key
    print("model\tserved\tPrivateTest\tPublicTest\thappy-vs-sad (Private)\tPrivateTest int8\tint8 crops/s\t"
          "variants\tpath")
    for m in registry.list():
        acc, int8 = m.manifest.accuracy, m.manifest.variants.get("int8", {})
        variants = ",".join(m.manifest.variants) or "fp32"
        rate = int8.get("cpu_img_per_s_batch32")  # batch 32, 2 threads, on the host that built the variants
        print(f"{m.key}\t{'*' if m.key == served else ''}\t{percent(acc.get('fer2013_private_test'))}\t"
              f"{percent(acc.get('fer2013_public_test'))}\t{percent(acc.get('fer2013_private_test_happy_vs_sad'))}\t"
              f"{percent(int8.get('fer2013_private_test'))}\t{f'{rate:.0f}' if rate else 'n/a'}\t"
              f"{variants}\t{m.onnx_path}")
    print(f"* served by `affectline serve` and used by `affectline classify` (AFFECTLINE_MODEL={settings.model})",
          file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if hasattr(args, "run"):  # a command with a module of its own (_command_modules)
            return args.run(args)
        settings = _settings(args)
        if args.command == "serve":
            return _serve(settings)
        if args.command == "db":
            return _db(args, settings)
        if args.command == "classify":
            return _classify(args, settings)
        return _models(args, settings)
    except KeyboardInterrupt:
        return 130
    except (ValueError, LookupError, OSError, SQLAlchemyError) as exc:
        # One line: drivers' messages can run over several (SQLAlchemy adds a "Background" link).
        print(f"affectline {args.command}: error: {(str(exc).strip() or type(exc).__name__).splitlines()[0]}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
