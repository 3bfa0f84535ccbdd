"""The numpy core: the IR, shape math, graph analysis, the float reference (the
specification every runtime is checked against), weights, errors and sizes. No runtime imports."""
