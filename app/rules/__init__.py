"""Daily rules: "send X to everyone matching P, at most once per local day, inside their local window"."""
