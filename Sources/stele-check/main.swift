print("stele-check: not built yet")
