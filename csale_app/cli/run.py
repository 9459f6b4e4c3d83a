"""Entry point: parse, run the pipeline, map errors to BIDS-App exit codes (one line each)."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path

from ..errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CsaleError
from .. import interrupt
from ..settings import Settings
from .parser import build_parser

LOG = logging.getLogger("csale_app")


def settings_from_args(args) -> Settings:
    return Settings(
        analyses=tuple(dict.fromkeys(args.analyses)),
        studyset_labels=tuple(args.studyset_label),
        roi=args.roi,
        roi_coords=tuple(tuple(c) for c in args.roi_coords),
        roi_radius=args.roi_radius,
        roi_dilation_mm=args.roi_dilation_mm,
        database=str(args.database) if args.database else None,
        n_iters=args.n_iters,
        voxel_thresh=args.voxel_thresh,
        cluster_alpha=args.cluster_alpha,
        min_cluster_size=args.min_cluster_size,
        merge_contrasts=args.merge_contrasts,
        min_experiments=args.min_experiments,
        kernel_fwhm=args.kernel_fwhm,
        brain_mask=args.brain_mask,
        device=args.device,
        gpu_id=args.gpu_id,
        nprocs=args.nprocs,
        mem_gb=args.mem_gb,
        batch_size=args.batch_size,
        random_seed=args.random_seed,
        work_dir=str(args.work_dir) if args.work_dir else None,
        overwrite=args.overwrite,
        verbose=args.verbose,
        quiet=args.quiet,
        csale_null=args.csale_null,
        subsamples=args.subsamples,
        subsample_fraction=args.subsample_fraction,
        macm_seed=args.macm_seed,
        macm_coverage=args.macm_coverage,
    )


def close_handlers(logger: logging.Logger) -> None:
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()


def setup_logging(settings: Settings, output_dir: Path | None) -> Path | None:
    """Console handler now; with ``output_dir``, also OUTPUT_DIR/logs/<time>.log, which
    receives the records buffered since the start of the run."""
    root = logging.getLogger("csale_app")
    buffered = [h for h in root.handlers if isinstance(h, logging.handlers.MemoryHandler)]
    close_handlers_except = buffered[0] if buffered else None
    for h in list(root.handlers):
        if h is not close_handlers_except:
            root.removeHandler(h)
            h.close()
    root.setLevel(logging.DEBUG)
    console = logging.StreamHandler(sys.stderr)
    level = logging.WARNING if settings.quiet else (
        logging.INFO if settings.verbose == 1 else
        logging.DEBUG if settings.verbose >= 2 else logging.WARNING)
    console.setLevel(level)
    console.setFormatter(logging.Formatter("csale-app: %(levelname)s: %(message)s"))
    root.addHandler(console)
    if output_dir is None:
        if close_handlers_except is None:
            root.addHandler(logging.handlers.MemoryHandler(100000, flushLevel=logging.CRITICAL + 1))
        return None
    try:
        logs = output_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_file = logs / f"csale_app_{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}.log"
        fh = logging.FileHandler(log_file, encoding="utf-8")
    except OSError:
        return None
    fh.setLevel(logging.DEBUG)
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    if close_handlers_except is not None:
        close_handlers_except.setTarget(fh)
        close_handlers_except.flush()
        root.removeHandler(close_handlers_except)
        close_handlers_except.close()
    root.addHandler(fh)
    return log_file


def _die(code: int, message: str) -> int:
    print(f"csale-app: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    interrupt.install()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on usage errors -> BIDS 64; --help/--version -> 0
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    settings = settings_from_args(args)
    if args.roi_coords and args.roi:
        return _die(EXIT_USAGE, "--roi and --roi-coords are mutually exclusive")
    from ..pipeline import Pipeline  # heavy imports after argument checks

    import nimare  # noqa: F401  (its import calls logging.basicConfig(INFO) on the root)

    logging.getLogger().handlers.clear()
    logging.getLogger().setLevel(logging.WARNING)

    pipe = Pipeline(settings, args.input_dir, args.output_dir)
    pipe.command_line = "csale-app " + " ".join(argv if argv is not None else sys.argv[1:])
    log_file = None
    try:
        pipe.check_paths()
        setup_logging(settings, None)
        LOG.info("csale-app %s", " ".join(argv if argv is not None else sys.argv[1:]))

        def on_output_ready():
            nonlocal log_file
            log_file = setup_logging(settings, Path(args.output_dir))

        pipe.on_output_ready = on_output_ready
        pipe.run()
    except CsaleError as exc:
        LOG.debug("error", exc_info=True)
        return _die(exc.exit_code, exc.one_line())
    except KeyboardInterrupt:
        return _die(130, "interrupted; no partial file was left under a final name")
    except MemoryError:
        return _die(EXIT_FAILURE, "out of memory; lower --batch-size or --nprocs")
    except Exception as exc:  # noqa: BLE001 - last resort: one line, details in the log
        LOG.debug("unexpected error", exc_info=True)
        if interrupt.requested():
            return _die(130, "interrupted; no partial file was left under a final name")
        where = f" (details in {log_file})" if log_file else ""
        return _die(EXIT_FAILURE, f"unexpected {type(exc).__name__}: {exc}{where}")
    finally:
        close_handlers(logging.getLogger("csale_app"))
    return EXIT_OK
