"""Golden run ids: parameter sets whose ids are pinned forever.

If one of these ids changes, the id scheme changed: stores made before would
recompute everything or, worse, serve a wrong result. Never edit an expected
id; introduce a new SCHEME_VERSION instead.
"""

from __future__ import annotations

import math

import numpy as np

from runstore.containers import Container, ContainerDict, ContainerList
from runstore.encoding import ObjectRef

CASES = [
    # (run type, parameters, pinned id)
    ("example.ExampleRun", {}, "5e40c78d1934631327465f901935faaf068d6d42"),
    ("example.ExampleRun", {"A": 1, "B": 2}, "8cfdfda0d6712e484c7bda70c28b17442dc8e721"),
    ("example.ExampleRun", {"A": 2, "B": 1}, "3acce60c8ef24b28d5710de8231726d3aeb3e52c"),
    ("example.OtherRun", {"A": 1, "B": 2}, "740e822217de920ce21ed90e827de7e7280b775b"),
    ("example.ExampleRun", {"A": 1}, "f7da3f1c73e336a3cc8e5ede447c81dcfd74f916"),
    ("example.ExampleRun", {"A": 1.0}, "3721c4de9decefc24852e509d9554d7d85a9a56e"),
    ("example.ExampleRun", {"A": True}, "603034f8300f639c4cdf10a3e9a02e04f347025e"),
    ("example.ExampleRun", {"A": "1"}, "ffa38a23f94d63ce4a9951af6878f0ad4de38b50"),
    ("example.ExampleRun", {"A": None}, "87bde255121b3a5a139d01d1f126e543e8573ef9"),
    ("example.ExampleRun", {"B": [1, 2]}, "98d047b51f2cb5903a05da1eae7c9459c405a789"),
    ("example.ExampleRun", {"B": (1, 2)}, "2f982d2b51213886dbccb4283c96b4d78091e73f"),
    ("example.ExampleRun", {"A": 10, "B": [3, 2, 4, 3, 8], "operator": max},
     "a0576e33773eb4e62e4e31efed445a65349d396a"),
    ("example.ExampleRun", {"A": 3, "B": [2, 5, 8], "operator": sum},
     "aca96536c9feb773bb3714691550f07f98cbe9e2"),
    ("example.ExampleRun", {"cfg": {"b": 2, "a": 1}}, "ddf2b0bd15a1c4482fb8ff056a236f2b718ca81b"),
    ("example.ExampleRun", {"cfg": {"a": 1, "b": 2}}, "ddf2b0bd15a1c4482fb8ff056a236f2b718ca81b"),
    ("example.ExampleRun", {"x": np.float64(2.5)}, "f37d023e87e996445d518a2afa608d802a7dafc2"),
    ("example.ExampleRun", {"x": 2.5}, "f37d023e87e996445d518a2afa608d802a7dafc2"),
    ("example.ExampleRun", {"x": np.arange(6, dtype=float).reshape(2, 3)},
     "d79908f5aa2cf1e6debe9f7999a9eacc8bbd7857"),
    ("example.ExampleRun", {"x": np.array(7, dtype=np.int32)},
     "d55e772258c5a7f62772e028e34fc3b769e94352"),
    ("example.ExampleRun", {"x": math.inf, "y": math.nan, "z": -0.0},
     "e7606e89efd4c733bf15ad208931389915d55ca8"),
    ("example.ExampleRun", {"x": 3 - 4j, "b": b"bytes", "big": 2**100},
     "1d38de3879d0f7ab804e87fea6c2fac25a490bf0"),
    ("example.ExampleRun", {"tags": {"gamma", "alpha", "beta"}, "frozen": frozenset({3, 1})},
     "f5fc5d17f835edf3d7adfeadcd06c4e61f39b993"),
    ("example.ExampleRun", {"state": Container(N=256, L=1.0)},
     "3a9b9c1582f7662673171f9f74cb3d3e730a3a20"),
    ("example.ExampleRun", {"state": ContainerList(a=1, b=[2, 3])},
     "de75a2f30d09382587205305b05fb99ee8fa1694"),
    ("example.ExampleRun", {"state": ContainerDict(k="v")},
     "90b340a1dc88661c7bd8d215abea0b0568fc976e"),
    ("example.ExampleRun", {"state": ObjectRef("example.State", {"N": 256, "L": 1.0})},
     "34fa86b79af32b0648b6cb2b8296cea0ead2e869"),
    ("example.ExampleRun", {"f": np.sin, "g": len, "dtype": float},
     "b63f21a114c59fb593d91278695fb24d5776b113"),
    ("example.ExampleRun", {"unicode": "ünïcødé ∂", "empty": ""},
     "7dedf67ff5d6c45e1fe47b284a692c6518d32b2a"),
]
