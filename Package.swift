// swift-tools-version:6.0
import PackageDescription

// The graph, drawn from the real imports (docs/architecture.md, "The package graph"); every
// module above SteleCore also imports SteleCore and SteleCrypto:
//
//   {CSodium, CSHA256} <- SteleCrypto <- SteleCore <- {PBFT, SteleLedger, SteleAdversary}
//   SteleLedger <- SteleAudit
//   {PBFT, SteleLedger, SteleAdversary} <- SteleSim            (the deterministic simulator)
//   {PBFT, SteleLedger, SteleAdversary} <- SteleNode + NIO     (the runtime: `stele replica`)
//   {SteleNode, SteleAudit} <- SteleHarness    (drives and attacks a cluster: the one replica-process
//                                               launcher, chaos, floods)
//   SteleHarness <- SteleBench                 (`stele bench`'s load loops and report)
//   {SteleBench, SteleHarness} <- stele;  SteleSim <- stele-sim;  SteleAudit <- stele-check
//   SteleCore <- SteleTestSupport   (tests only: scratch directories, bounded polling, fixed-key configs)
//
// What each target may import is the allowed-imports table in docs/architecture.md, the one
// source of truth; tools/check-architecture (run by tools/test and ArchitectureTests) fails when
// a file imports beyond its row, or when the dependencies below differ from what the files import.
let package = Package(
    name: "Stele",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "stele-sim", targets: ["stele-sim"]),
        .executable(name: "stele-check", targets: ["stele-check"]),
        .executable(name: "stele", targets: ["stele"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        // SHA-256 on the x86 SHA extensions, chosen at run time; libsodium otherwise.
        .target(name: "CSHA256"),
        .target(name: "SteleCrypto", dependencies: ["CSodium", "CSHA256"]),
        .target(name: "SteleCore", dependencies: ["SteleCrypto"]),
        .target(name: "PBFT", dependencies: ["SteleCore", "SteleCrypto"]),
        .target(name: "SteleLedger", dependencies: ["SteleCore", "SteleCrypto"]),
        .target(name: "SteleAdversary", dependencies: ["SteleCore", "SteleCrypto"]),
        .target(name: "SteleAudit", dependencies: ["SteleLedger", "SteleCore", "SteleCrypto"]),
        .target(name: "SteleSim", dependencies: ["PBFT", "SteleLedger", "SteleAdversary", "SteleCore", "SteleCrypto"]),
        .target(
            name: "SteleNode",
            dependencies: [
                "PBFT", "SteleLedger", "SteleAdversary", "SteleCore", "SteleCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(
            name: "SteleHarness",
            dependencies: [
                "SteleNode", "SteleAudit", "SteleLedger", "SteleCore", "SteleCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // `stele bench`'s load loops, measurements and report, as a library so that their tests
        // import no executable.
        .target(
            name: "SteleBench",
            dependencies: [
                "SteleHarness", "SteleNode", "SteleLedger", "SteleCore", "SteleCrypto",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "stele",
            dependencies: [
                "SteleBench", "SteleHarness", "SteleNode", "SteleAudit", "SteleLedger", "SteleAdversary", "SteleCore",
                "SteleCrypto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "stele-sim",
            dependencies: [
                "SteleSim", "PBFT", "SteleCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "stele-check",
            dependencies: ["SteleAudit", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),

        // Tests. SteleTestSupport is Foundation-only, so the Crypto, Core and PBFT tests link no
        // NIO and no process runner.
        .target(name: "SteleTestSupport", dependencies: ["SteleCore", "SteleCrypto"], path: "Tests/SteleTestSupport"),
        .testTarget(name: "SteleTestSupportTests", dependencies: ["SteleTestSupport", "SteleCore", "SteleCrypto"]),
        .testTarget(name: "ArchitectureTests", dependencies: ["SteleTestSupport"]),
        .testTarget(name: "SteleCryptoTests", dependencies: ["SteleCrypto", "SteleTestSupport"]),
        .testTarget(name: "SteleCoreTests", dependencies: ["SteleCore", "SteleCrypto", "SteleTestSupport"]),
        .testTarget(name: "PBFTTests", dependencies: ["PBFT", "SteleCore", "SteleCrypto", "SteleTestSupport"]),
        .testTarget(
            name: "SteleLedgerTests",
            dependencies: ["SteleLedger", "SteleCore", "SteleCrypto", "SteleTestSupport"]
        ),
        .testTarget(
            name: "SteleAdversaryTests",
            dependencies: ["SteleAdversary", "SteleCore", "SteleCrypto", "SteleTestSupport"]
        ),
        .testTarget(
            name: "SteleAuditTests",
            dependencies: ["SteleAudit", "SteleLedger", "SteleCore", "SteleCrypto", "SteleTestSupport"]
        ),
        .testTarget(
            name: "SteleSimTests",
            dependencies: [
                "SteleSim", "PBFT", "SteleAudit", "SteleLedger", "SteleCore", "SteleCrypto", "SteleTestSupport",
            ]
        ),
        .testTarget(
            name: "SteleNodeTests",
            dependencies: [
                "SteleNode", "SteleHarness", "PBFT", "SteleAudit", "SteleLedger", "SteleAdversary",
                "SteleCore", "SteleCrypto", "SteleTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .testTarget(
            name: "SteleHarnessTests",
            dependencies: ["SteleHarness", "SteleNode", "SteleCore", "SteleCrypto", "SteleTestSupport"]
        ),
        .testTarget(name: "SteleBenchTests", dependencies: ["SteleBench", "SteleHarness", "SteleNode", "SteleCore"]),
    ]
)
