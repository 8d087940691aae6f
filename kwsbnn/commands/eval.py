"""`kwsbnn eval`: accuracy, per-class accuracy and confusion matrix of a model on a split."""

HELP = "evaluate a trained model on a Speech Commands split"
DESCRIPTION = """\
Evaluate a model (a .pt file or a shipped model's name: float, int8, binary) on a split of a Speech
Commands folder. --engine torch runs int8 and binary models in the integer inference mode (the float
model runs in float). --json prints accuracy, per_class, confusion, predictions and clips (clips in
the split's stable order, the same for every engine).
"""


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="model file or shipped model name")
    parser.add_argument("--data", required=True, help="Speech Commands folder")
    parser.add_argument("--split", default="test", choices=["test", "validation", "train", "all"])
    parser.add_argument("--engine", default="torch", help="inference engine (default torch)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate N clips spread over the split")
    parser.add_argument("--plot", default=None, metavar="PNG", help="write the confusion matrix as a PNG")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from kwsbnn.cli import emit_json
    from kwsbnn.sw.checkpoint import load_model
    from kwsbnn.sw.evaluate import evaluate, plot_confusion

    model = load_model(args.model)
    res = evaluate(model, args.data, split=args.split, engine=args.engine, limit=args.limit)
    res["model"] = str(args.model)
    res["precision"] = model.config.precision
    if args.plot:
        res["plot"] = str(plot_confusion(res, args.plot))
    if args.json:
        emit_json(res)
    else:
        print(f"{args.model} ({model.config.precision}, engine {args.engine}) on {args.split}: "
              f"accuracy {res['accuracy']:.4f} over {res['n']} clips")
        for c, a in res["per_class"].items():
            print(f"  {c:8s} {'-' if a is None else f'{a:.3f}'}  ({res['counts'][c]} clips)")
        if args.plot:
            print(f"confusion matrix: {res['plot']}")
    return 0
