import json, math, sys
sys.path.insert(0, '.')
import os, tempfile
os.environ["POPULACE_CACHE"] = tempfile.mkdtemp()
from update_baselines import baseline, path_of, setup
from populace.calibrate import legacy_name
from populace.scenario import find_scenario, parse_sets
for name in ["bench-seir", "nyc-covid", "classroom", "h5n1-fowl-to-fork"]:
    stored = json.loads(path_of(name).read_text()); now = baseline(name)
    cls = find_scenario(name); model = cls().build(1000 if name != "h5n1-fowl-to-fork" else cls.default_agents, parse_sets(cls, []), seed=1, device="cpu")
    ks = [k for k in stored if k not in ("agents","days","seed","options")]
    print(name, "top keys", ks)
    sser, nser = stored["series"], now["series"]
    same = all(sser[k] == nser[k] for k in sser)
    print("  series identical:", same, "new:", sorted(set(nser)-set(sser)), "missing:", sorted(set(sser)-set(nser)))
    sg, ng = stored["gradient"]["parameters"], now["gradient"]["parameters"]; print("  outcome", stored["gradient"]["value"], now["gradient"]["value"])
    worst = 0.0
    for k, v in sg.items():
        k2 = legacy_name(model, k)
        w = ng[k2]
        rel = abs(w - v) / max(abs(v), 1e-12) if v else abs(w)
        worst = max(worst, rel)
    print("  gradients", len(sg), "->", len(ng), "extra:", sorted(set(ng) - {legacy_name(model,k) for k in sg}), "worst rel diff", worst)
