"""Labels of class folders (issue 30): ImageNet WordNet-ID folders get their ImageNet-1k index on a
1000-class model, any subset of the 1000; other folders their sorted position; --class-map maps any
layout. Expected indices are written out below from the published ImageNet-1k class index (the
sorted ILSVRC-2012 synsets), independently of the shipped table."""
import ast
import json
import os

import numpy as np
import pytest

from resformer_deploy.data import imagenet_classes as ic
from resformer_deploy.data.sources import open_source
from resformer_deploy.data.writers import write_image_folder, write_npz
from resformer_deploy.errors import DeployError
from tests.cli.test_cli import run
from tests.support.datasets import random_image

# published ImageNet-1k index and torchvision category name of a few WNIDs
PUBLISHED = {"n01440764": (0, "tench"), "n01443537": (1, "goldfish"), "n02123045": (281, "tabby"),
             "n15075141": (999, "toilet tissue"), "n02012849": (134, "crane bird"), "n03126707": (517, "crane")}
# Imagenette (fast.ai): its 10 WNIDs and their ImageNet-1k indices
IMAGENETTE = {"n01440764": 0, "n02102040": 217, "n02979186": 482, "n03000684": 491, "n03028079": 497,
              "n03394916": 566, "n03417042": 569, "n03425413": 571, "n03445777": 574, "n03888257": 701}
# Imagewoof (fast.ai): 10 dog breeds
IMAGEWOOF = {"n02086240": 155, "n02087394": 159, "n02088364": 162, "n02089973": 167, "n02093754": 182,
             "n02096294": 193, "n02099601": 207, "n02105641": 229, "n02111889": 258, "n02115641": 273}


def folder(tmp, classes, per_class=2, name="imgs"):
    """root/<class>/<i>.png, 8x8 images; classes written in the order given (not sorted)."""
    rng = np.random.RandomState(0)
    labels = [c for c in range(len(classes)) for _ in range(per_class)]
    return write_image_folder(os.path.join(tmp, name), [random_image(rng, 8, 8) for _ in labels], labels,
                              list(classes), fmt="PNG")


def labels_by_folder(src):
    """{class folder: labels of its samples} from the paths the source lists."""
    out = {}
    for i in range(len(src)):
        out.setdefault(os.path.basename(os.path.dirname(src.ref(i).name)), []).append(src.label(i))
    return out


def error(fn, *a, **kw):
    with pytest.raises(DeployError) as e:
        fn(*a, **kw)
    return str(e.value)


def test_table_is_the_1000_sorted_wnids_with_torchvision_names():
    table = ic.imagenet_1k()
    wnids = [w for w, _ in table]
    assert len(table) == 1000 and len(set(wnids)) == 1000 and wnids == sorted(wnids)
    for w, (i, name) in {**PUBLISHED, **{k: (v, None) for k, v in {**IMAGENETTE, **IMAGEWOOF}.items()}}.items():
        assert wnids[i] == w and ic.wnid_index()[w] == i
        assert name is None or table[i][1] == name
    # the names are torchvision's weight-metadata categories (a pinned dependency), read from its source file
    import importlib.util
    meta = os.path.join(importlib.util.find_spec("torchvision").submodule_search_locations[0], "models", "_meta.py")
    tree = ast.parse(open(meta).read())  # not imported: importing torchvision takes seconds
    cats = next(ast.literal_eval(n.value) for n in tree.body
                if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "_IMAGENET_CATEGORIES")
    assert [n for _, n in table] == list(cats)
    header = open(ic.table_path()).read().split("\n0\t")[0]
    assert "timm/data/_info/imagenet_synsets.txt" in header and "torchvision" in header


def test_table_is_package_data():
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "pyproject.toml")).read()
    assert '"resformer_deploy.data" = ["imagenet_1k.tsv"]' in text


def test_two_wnid_folders_get_their_imagenet_indices(tmp_path):
    root = folder(tmp_path, ["n02123045", "n01443537"])
    src = open_source(root, num_classes=1000)
    assert labels_by_folder(src) == {"n01443537": [1, 1], "n02123045": [281, 281]}
    m = src.class_mapping
    assert m.kind == "imagenet-wnid" and len(src.classes) == 1000
    assert src.classes[281] == "n02123045" and m.titles[281] == "tabby"
    assert m.to_json() == {"kind": "imagenet-wnid", "source": ic.table_path(),
                           "folders": {"n01443537": 1, "n02123045": 281}}
    assert m.line() == ("class mapping: imagenet-wnid (2 WordNet-ID folders at their ImageNet-1k indices: "
                        "n01443537 -> 1 goldfish, n02123045 -> 281 tabby)")
    assert src.describe().endswith(": 4 images, 2 classes")  # the folders found, not the 1000 labels
    # not a 1000-class model (or unknown): torchvision's sorted-folder labels
    for k in (2, None):
        s = open_source(root, num_classes=k)
        assert labels_by_folder(s) == {"n01443537": [0, 0], "n02123045": [1, 1]}
        assert s.class_mapping.kind == "sorted-folders" and s.classes == ("n01443537", "n02123045")


@pytest.mark.parametrize("subset", [IMAGENETTE, IMAGEWOOF], ids=["imagenette", "imagewoof"])
def test_imagenette_and_imagewoof(tmp_path, subset):
    root = folder(tmp_path, list(reversed(subset)), per_class=1)
    src = open_source(root, num_classes=1000)
    assert labels_by_folder(src) == {w: [i] for w, i in subset.items()}
    assert src.class_mapping.to_json()["folders"] == subset


def test_all_1000_folders_are_torchvision_sorted_order(tmp_path):
    """The whole val set: the ImageNet-1k index is the sorted-folder label torchvision gives it."""
    one = folder(tmp_path, ["x"], per_class=1, name="one")
    png = open(os.path.join(one, "x", os.listdir(os.path.join(one, "x"))[0]), "rb").read()
    root = tmp_path / "val"
    for w, _ in reversed(ic.imagenet_1k()):
        (root / w).mkdir(parents=True)
        (root / w / "a.png").write_bytes(png)
    src = open_source(root, num_classes=1000)
    assert src.class_mapping.kind == "imagenet-wnid"
    folders = sorted(os.listdir(root))
    assert [src.label(i) for i in range(len(src))] == [folders.index(os.path.basename(os.path.dirname(
        src.ref(i).name))) for i in range(len(src))] == list(range(1000))
    assert {w: labels_by_folder(src)[w] for w in PUBLISHED} == {w: [i] for w, (i, _) in PUBLISHED.items()}


def test_wnid_not_in_the_1000_is_one_error(tmp_path):
    root = folder(tmp_path, ["n01440764", "n99999999"], per_class=1)
    assert error(open_source, root, num_classes=1000) == (
        f"ImageFolder {root}: class folder n99999999 looks like a WordNet ID but is not one of the 1000 ImageNet-1k "
        f"classes ({ic.table_path()}); rename or pass --class-map FILE")
    assert open_source(root, num_classes=2).class_mapping.kind == "sorted-folders"  # a 2-class model: its own


def test_mixed_folders_are_refused_with_the_list(tmp_path):
    root = folder(tmp_path, ["n01440764", "cat", "n01443537", "dog"], per_class=1)
    assert error(open_source, root, num_classes=1000) == (
        f"ImageFolder {root}: mixed class folders, 2 named by ImageNet WordNet ID (n01440764, n01443537) and 2 not "
        f"(cat, dog); name every folder by its WNID, or pass --class-map FILE (lines 'folder index')")


def test_class_map_json_and_text(tmp_path):
    root = folder(tmp_path, ["zebra", "apple", "Mango"], per_class=1)
    want = {"zebra": [340], "apple": [948], "Mango": [0]}
    js = tmp_path / "map.json"
    js.write_text(json.dumps({"zebra": 340, "apple": 948, "Mango": 0, "absent": 5}))
    txt = tmp_path / "map.txt"
    txt.write_text("# folder index\nzebra 340\n\napple   948\nMango\t0\n")
    for path, unused in ((js, 1), (txt, 0)):
        src = open_source(root, num_classes=1000, class_map=str(path))
        assert labels_by_folder(src) == want
        m = src.class_mapping
        assert m.kind == "class-map" and m.unused == unused and len(src.classes) == 1000
        assert (src.classes[0], src.classes[340], src.classes[948], src.classes[1]) == ("Mango", "zebra", "apple", "1")
        assert m.to_json() == {"kind": "class-map", "source": str(path), "folders": {"Mango": 0, "apple": 948,
                                                                                     "zebra": 340}}
    two = tmp_path / "two.txt"  # two folders onto one class, on a 2-class model
    two.write_text("zebra 1\napple 1\nMango 0\n")
    src = open_source(root, num_classes=2, class_map=str(two))
    assert labels_by_folder(src) == {"zebra": [1], "apple": [1], "Mango": [0]}
    assert src.classes == ("Mango", "apple+zebra")


def test_class_map_on_frames(tmp_path):
    from tests.support.datasets import frames
    root = frames(tmp_path, n=3, classes=3, splits=("test",))
    (tmp_path / "m.txt").write_text("0 10\n1 2\n2 0\n")
    src = open_source(root, num_classes=11, class_map=str(tmp_path / "m.txt"))
    assert src.kind == "frames" and src.class_mapping.kind == "class-map"
    assert labels_by_folder(src) == {"0": [10], "1": [2], "2": [0]}


def test_class_map_errors(tmp_path):
    root = folder(tmp_path, ["zebra", "apple"], per_class=1)

    def bad(text, k=10, name="m.txt"):
        p = tmp_path / name
        p.write_text(text)
        return error(open_source, root, num_classes=k, class_map=str(p)), str(p)

    msg, p = bad("zebra 3\napple 10\n")
    assert msg == f"--class-map {p}: index out of range 0..9 (the classifier has 10 classes): apple 10"
    msg, p = bad('{"zebra": 1, "apple": 1000}', k=1000, name="m.json")
    assert msg == f"--class-map {p}: index out of range 0..999 (the classifier has 1000 classes): apple 1000"
    msg, p = bad("zebra 3\n")
    assert msg == f"--class-map {p}: class folder(s) of ImageFolder {root} not in the map: apple (1 of 2)"
    msg, p = bad('{"zebra": 1, "zebra": 2, "apple": 0}', name="d.json")
    assert msg == f"--class-map {p}: folder(s) named twice: zebra"
    msg, p = bad('{"zebra": "1", "apple": true}', name="s.json")
    assert msg == f"--class-map {p}: the index of 'zebra', 'apple' is not an integer"
    msg, p = bad('["zebra", 1]', name="l.json")
    assert msg == f"--class-map {p} line 1: expected 'folder index', got '[\"zebra\", 1]'"
    msg, p = bad("zebra three\n")
    assert msg == f"--class-map {p} line 1: expected 'folder index', got 'zebra three'"
    msg, p = bad("zebra -1\napple 0\n")
    assert msg == f"--class-map {p}: negative index: zebra -1"
    msg, p = bad("# nothing\n")
    assert msg.startswith(f"--class-map {p}: no entries")
    msg, p = bad('{"zebra": 1', name="t.json")
    assert msg.startswith(f"--class-map {p}: not valid JSON: ")
    missing = tmp_path / "none.txt"
    assert error(open_source, root, num_classes=10, class_map=str(missing)) == \
        f"--class-map {missing}: cannot read: No such file or directory"
    npz = write_npz(tmp_path / "d.npz", np.zeros((2, 1, 8, 8), np.float32), np.array([0, 1]))
    (tmp_path / "ok.txt").write_text("zebra 0\n")
    assert error(open_source, npz, num_classes=10, class_map=str(tmp_path / "ok.txt")).startswith(
        f"--class-map {tmp_path / 'ok.txt'}: npz {npz}: 2 samples")


@pytest.fixture(scope="module")
def imagenet_ckpt(tmp_path_factory):
    """A ti-topology model at 32x32 with the 1000 ImageNet classes (random weights)."""
    from resformer_deploy.model.checkpoint import save_checkpoint
    from tests.support.small_models import small_model
    path = tmp_path_factory.mktemp("ti1k") / "ti1k.pt"
    save_checkpoint(path, small_model("ti32k"))
    return path


def test_evaluate_reports_the_mapping_and_per_class_under_wnid_and_name(imagenet_ckpt, tmp_path):
    root = folder(tmp_path, ["n02123045", "n01443537"])
    out = tmp_path / "e.json"
    r = run("evaluate", str(imagenet_ckpt), "--data", root, "--json-out", str(out))
    assert r.exit_code == 0, r.stderr
    assert "class mapping: imagenet-wnid (2 WordNet-ID folders at their ImageNet-1k indices: n01443537 -> 1 " \
           "goldfish, n02123045 -> 281 tabby)" in r.output
    assert "per-class accuracy of the 2 classes with samples (of 1,000):" in r.output
    j = json.loads(out.read_text())
    assert j["data"]["class_mapping"] == {"kind": "imagenet-wnid", "source": ic.table_path(),
                                          "folders": {"n01443537": 1, "n02123045": 281}}
    assert [(os.path.basename(os.path.dirname(p["name"])), p["label"]) for p in j["predictions"]] == \
        [("n01443537", 1)] * 2 + [("n02123045", 281)] * 2
    pred = [p["prediction"] for p in j["predictions"]]
    present = [c for c in j["per_class"] if c["samples"]]
    assert len(j["per_class"]) == 1000 and j["per_class"][999]["wnid"] == "n15075141"
    assert [(c["class"], c["wnid"], c["name"], c["samples"], c["correct"]) for c in present] == [
        (1, "n01443537", "goldfish", 2, sum(p == 1 for p in pred[:2])),
        (281, "n02123045", "tabby", 2, sum(p == 281 for p in pred[2:]))]
    for c in present:  # the text table's rows: class, wnid, name, samples
        assert any(line.split()[:4] == [str(c["class"]), c["wnid"], c["name"], "2"] for line in r.output.splitlines())
    # the same folders with a class map: its mapping is said and recorded
    cm = tmp_path / "map.txt"
    cm.write_text("n01443537 7\nn02123045 8\n")
    out2 = tmp_path / "m.json"
    r = run("evaluate", str(imagenet_ckpt), "--data", root, "--class-map", str(cm), "--json-out", str(out2))
    assert r.exit_code == 0, r.stderr
    assert f"class mapping: class-map {cm} (n01443537 -> 7, n02123045 -> 8)" in r.output
    j2 = json.loads(out2.read_text())
    assert j2["data"]["class_mapping"]["kind"] == "class-map"
    assert [p["label"] for p in j2["predictions"]] == [7, 7, 8, 8]


def test_ray_workers_reopen_with_the_class_map_as_read(tmp_path):
    """A Ray worker reopens --data from the recipe: the class map travels in it, read once here."""
    from types import SimpleNamespace

    from resformer_deploy.analysis.data_inputs import open_data
    from resformer_deploy.engines.ray_engine import data_recipe, reopen_data
    from resformer_deploy.model.variants import get_config

    cfg = get_config("ti", planes=(8, 24, 48), group_size=8, img_size=32, num_classes=1000)
    root = folder(tmp_path, ["zebra", "apple"], per_class=1)
    cm = tmp_path / "map.txt"
    cm.write_text("zebra 340\napple 948\n")
    md = open_data(root, cfg, "ti", class_map=str(cm))
    recipe = data_recipe(md)
    cm.unlink()  # not on the worker's node
    again = reopen_data(recipe, SimpleNamespace(config=cfg, variant="ti"))
    assert again.to_json() == md.to_json() and again.to_json()["class_mapping"]["kind"] == "class-map"
    assert labels_by_folder(again.source) == {"zebra": [340], "apple": [948]}
