"""Simulators and the demo: device stand-ins (Modbus and CJ/T 188 meters, door controllers, AIS
traffic) and `hub demo`, which runs them through the real pipeline.

Installed with the hub but not part of it: nothing in `hub` or `drivers` imports this package
(tests/unit/test_layering.py); the CLI reaches `sim.demo` by name at one wiring point
(hub/wiring.py). The `simulated_meters` source type stays in drivers/simulated.py: it is a source
a config can name (to try a fresh gateway), not a device speaking a protocol to the hub.
"""
