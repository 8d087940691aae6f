"""`kwsbnn search`: hardware-aware architecture search (an Optuna multi-objective study)."""

HELP = "hardware-aware architecture search over binary networks (Optuna, multi-objective)"
DESCRIPTION = """\
Search binary keyword-spotting networks for the best trade-off between validation accuracy (max),
weight memory bits (min) and cycles per inference of the generated accelerator (min). The space:
stage widths (16-128) and depths, pooling placement, dilation, shortcut (none | bit | int: the
integer residual stream), RSign (with the stream), first-layer weights (int8 | bin), last layer
(bin | int8), batch norm, clipped STE and its window, padding bit, optimizer, schedule, learning
rate and the distillation weight (docs/binary-guidelines.md). Data folders, teacher and
augmentation are study settings, not searched.

Every candidate is exported untrained and costed first; one the hardware cannot build or that does
not fit --budget is rejected without training:
  board    the iCEBreaker (iCE40UP5K) with its UART link and streaming ring, in the style it runs
           the network in: the layer-per-unit pipeline where that fits (30 block RAMs of 4 Kibit,
           5,280 logic cells, 8 DSPs, by the calibrated estimate of hw/resources.py), else the
           layer engine: its weights, the integer stream map (shortcut=int: channels x positions x
           8 bits) and the input ring within the 1 Mbit of SPRAM (16K 64-bit words), and its logic,
           block RAMs and DSPs within the chip's. Cycles are those of that style.
  bits:N   at most N weight bits
  none     only what the generator can build
An integer-stream candidate (shortcut=int) is costed as the generator builds it: the engine style
with its stream map.

Successive halving over epochs (--rungs, --eta): every trial runs one schedule of --epochs epochs
(a cosine schedule over all of them) and is judged at --epochs / eta^k epochs; at each rung only the
best 1/eta of the trials that reached it (Pareto front number, then accuracy) go on, continuing the
same run; the others stop (pruned). Runs that are already beaten at the same epoch by two cheaper
trials are pruned as well (--pruner).

A trial's epochs rank candidates; --refine K trains the K most accurate members of the Pareto front
again for --refine-epochs (default 5 x --epochs) with the same options and teacher, into
OUT/refined/NNNN-EEep; the best of them (validation accuracy) is the study's recommended model, and
`kwsbnn report pareto --export NNNN` exports the refined weights.

Each trial trains in OUT/trials/NNNN (a `kwsbnn train` run folder). The study lives in
sqlite:///OUT/study.db unless --storage names another database: rerun the same command to continue
an interrupted search (--trials is the study's total, so only the missing trials run; trials left
running by a killed worker are marked failed and re-queued, and continue from their last epoch).
With --storage postgresql://USER:PASSWORD@HOST/DB, start the same command on many machines: they
share one study. Then: kwsbnn report pareto --dir OUT (or --storage URL --study NAME).

Example (a real search; hours on 2 CPU cores):
  kwsbnn search --data /path/to/speech_commands --trials 60 --epochs 27 --study kws --out searches/kws
"""


def add_arguments(parser):
    parser.add_argument("--data", required=True, help="Speech Commands folder (read in place)")
    parser.add_argument("--trials", type=int, required=True,
                        help="finished trials the study should have (all workers together)")
    parser.add_argument("--study", default="kws", help="study name (default kws)")
    parser.add_argument("--out", default=None, help="study folder (default searches/<study>)")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="Optuna storage URL (default sqlite:///<out>/study.db; postgresql://... "
                             "to share the study between machines)")
    parser.add_argument("--budget", default="board", help="board | bits:N | none (default board)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="the schedule of every trial: a trial promoted through every rung trains "
                             "this many epochs (default 20, --tiny 1)")
    parser.add_argument("--teacher", default=None, metavar="MODEL",
                        help="float model to distill from (default: the shipped `float` model when "
                             "present; `none` to switch distillation off)")
    parser.add_argument("--pruner", default="pareto", choices=["pareto", "median", "none"],
                        help="early stopping of hopeless trials (default pareto)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny networks (4 or 8 channels), 1 epoch, small batches: a test mode")
    parser.add_argument("--refine", type=int, default=0, metavar="K",
                        help="after the trials, train the K most accurate Pareto-front members again, "
                             "longer (--refine-epochs); the best is the study's recommended model")
    parser.add_argument("--refine-epochs", type=int, default=None, metavar="E",
                        help="epochs of a refinement (default 5 x --epochs)")
    parser.add_argument("--rungs", type=int, default=3,
                        help="successive halving: a trial is judged at --epochs / eta^k epochs "
                             "(k = rungs-1 .. 0) and goes on only among the best 1/eta of the trials "
                             "at that rung (default 3; 1: every trial trains --epochs)")
    parser.add_argument("--eta", type=int, default=3, help="successive halving's reduction factor (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="training seed of every trial")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads per worker")
    parser.add_argument("--strict", action="store_true",
                        help="an unusable WAV file in --data is an error (default: skip it, count and "
                             "name it on stderr and in the JSON's `skipped`)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    import sys

    from kwsbnn.cli import emit_json
    from kwsbnn.errors import KwsError
    from kwsbnn.paths import MODELS
    from kwsbnn.sw.search import SearchConfig, run_search
    from kwsbnn.sw.pareto import format_refined, format_table

    if args.teacher is None:
        teacher = None if args.tiny or not (MODELS / "float.pt").is_file() else "float"
    else:
        teacher = None if args.teacher.lower() == "none" else args.teacher
    epochs = args.epochs if args.epochs is not None else (1 if args.tiny else 20)
    batch = args.batch_size or (16 if args.tiny else 64)
    if batch < 1:
        raise KwsError("--batch-size must be at least 1")
    cfg = SearchConfig(data=args.data, trials=args.trials, study=args.study, out=args.out or "",
                       storage=args.storage, budget=args.budget, epochs=epochs, teacher=teacher,
                       tiny=args.tiny, seed=args.seed, batch_size=batch,
                       bn_batches=2 if args.tiny else 20, threads=args.threads, pruner=args.pruner,
                       refine=args.refine, refine_epochs=args.refine_epochs or 0,
                       rungs=args.rungs, eta=args.eta)
    from kwsbnn.sw.skipped import scan
    skipped = scan(args.data, args.strict, "kwsbnn search", seed=args.seed)
    result = run_search(cfg, progress=not args.json and sys.stderr.isatty())
    result["skipped"] = skipped
    if args.json:
        emit_json(result)
    else:
        c = result["counts"]
        print(f"study {result['study']} ({result['storage']}): {c['complete']} complete, {c['pruned']} "
              f"pruned, {c['rejected']} rejected by the budget, {c['failed']} failed")
        print(format_table(result["pareto"]) if result["pareto"] else "no completed trial yet")
        if result["refined"]:
            print("\nrefined (trained again, longer):")
            print(format_refined(result["refined"]))
        print(f"\nkwsbnn report pareto --storage URL --study {cfg.study}" if args.storage
              else f"\nkwsbnn report pareto --dir {cfg.folder()}")
    return 0
