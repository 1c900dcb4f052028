print("stele-sim: not built yet")
