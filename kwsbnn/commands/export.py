"""`kwsbnn export`: a trained model -> the deployable model folder."""

HELP = "export a trained model as a deployable model (manifest + memory images)"
DESCRIPTION = """\
Write the deployable model of a trained model: manifest.json (layers, shapes, precisions, padding,
feature quantization) and every weight, threshold and constant as a memory image (.hex for
$readmemh and raw .bin). The format is documented in docs/deployable-model.md.
--model takes a model file, a shipped model's name (float, int8, binary), or `tiny` (the walking
skeleton's network).
"""


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="model file, shipped model name, or tiny")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tiny network (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from kwsbnn.cli import emit_json
    from kwsbnn.sw import deploy
    from kwsbnn.sw.export import export

    out = export(args.model, args.out, seed=args.seed)
    dep = deploy.load(out)
    summary = {"out": str(out), "name": dep.name, "layers": [l["name"] for l in dep.layers],
               "images": len(dep.manifest["images"]),
               "image_bits": sum(m["width"] * m["depth"] for m in dep.manifest["images"].values())}
    if args.json:
        emit_json(summary)
    else:
        print(f"exported {args.model} to {out}: {len(dep.layers)} layers, {summary['images']} memory "
              f"images, {summary['image_bits']} bits")
    return 0
