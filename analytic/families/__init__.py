"""Kernel families as physical functions of their hyper-parameters (one module per family).

Each module says how a family's kernel divides its work among CTAs for a given head dim, state size,
group count or channel count (read from the kernel's launch code), and so what its time depends on
beyond bytes and FLOPs: state-size overheads, wave quantisation, tile shapes, on-chip memory limits.
`analytic.efficiency` calls them; with a calibration that measured only the paper's shapes each
returns today's (shape-blind) figure, so old files predict as before.
"""
