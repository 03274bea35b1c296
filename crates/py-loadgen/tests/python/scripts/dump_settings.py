"""Prints every TestSettings field as JSON after the FromConfig calls given
as PATH:MODEL:SCENARIO:CONF_TYPE arguments (each line: the return code)."""
import json
import sys
import warnings

import mlperf_loadgen as lg

warnings.simplefilter("ignore")
FIELDS = [a for a in dir(lg.TestSettings()) if not a.startswith("_") and a != "FromConfig"]
settings = lg.TestSettings()
codes = []
for spec in sys.argv[1:]:
    if spec == "fresh":
        settings = lg.TestSettings()
        continue
    path, model, scenario, conf_type = spec.rsplit(":", 3)
    codes.append(settings.FromConfig(path, model, scenario, int(conf_type)))
values = {}
for f in FIELDS:
    v = getattr(settings, f)
    values[f] = v.name if hasattr(v, "name") else v
print(json.dumps({"codes": codes, "settings": values}, sort_keys=True))
