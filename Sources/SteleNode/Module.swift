public enum SteleNodeModule {}
