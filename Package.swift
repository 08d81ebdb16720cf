// swift-tools-version:6.0
import PackageDescription

/// SwiftNIO's websocket stack, for the fixture relay and the test client.
let websocket: [Target.Dependency] = [
  .product(name: "NIOCore", package: "swift-nio"),
  .product(name: "NIOPosix", package: "swift-nio"),
  .product(name: "NIOHTTP1", package: "swift-nio"),
  .product(name: "NIOWebSocket", package: "swift-nio"),
]

let package = Package(
  name: "Contrail",
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "contrail", targets: ["contrail"]),
    // The parsers, as libraries for the separate fuzzing package (`Fuzz/`, `scripts/fuzz`).
    .library(name: "ContrailFirehose", targets: ["Firehose"]),
    .library(name: "ContrailEvents", targets: ["Events"]),
    .library(name: "ContrailEventLog", targets: ["EventLog"]),
    .library(name: "ContrailSubscribe", targets: ["Subscribe"]),
    .library(name: "ContrailURLQuery", targets: ["URLQuery"]),
    .library(name: "ContrailIngest", targets: ["Ingest"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
    .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
  ],
  targets: [
    .systemLibrary(
      name: "CCBOR", pkgConfig: "libcbor",
      providers: [.apt(["libcbor-dev"])]),
    .systemLibrary(
      name: "CZstd", pkgConfig: "libzstd",
      providers: [.apt(["libzstd-dev"])]),
    .target(name: "Firehose", dependencies: ["CCBOR", "Compression"]),
    .target(name: "Events", dependencies: ["Firehose"]),
    .target(name: "Compression", dependencies: ["CZstd"]),
    // The default dictionary's bytes, compiled in.
    .target(
      name: "DefaultDictionary", path: "Dictionaries", exclude: ["README.md"],
      resources: [.embedInCode("contrail-default.zdict")]),
    .target(name: "EventLog", dependencies: ["Events", "Firehose"]),
    .target(
      name: "Broadcast",
      dependencies: [
        "Events", "EventLog", "Compression", .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
      ]),
    .target(name: "SyntheticFirehose", dependencies: ["Firehose"]),
    .target(name: "URLQuery"),
    .target(
      name: "RelayFixture",
      dependencies: [
        "Firehose", "SyntheticFirehose", "URLQuery",
        .product(name: "NIOSSL", package: "swift-nio-ssl"),
      ] + websocket),
    .target(
      name: "Subscribe",
      dependencies: [
        "Events", "Broadcast", "EventLog", "Compression", "URLQuery", "LabelledMetrics",
        .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
      ] + websocket),
    .target(
      name: "WebSocketClient",
      dependencies: [.product(name: "NIOSSL", package: "swift-nio-ssl")] + websocket),
    .target(
      name: "LabelledMetrics",
      dependencies: [.product(name: "CoreMetrics", package: "swift-metrics")]),
    .target(
      name: "Ingest",
      dependencies: [
        "Events", "Compression", "EventLog", "Broadcast", "WebSocketClient", "LabelledMetrics",
        "URLQuery", .product(name: "NIOSSL", package: "swift-nio-ssl"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"),
      ] + websocket),
    .target(
      name: "App",
      dependencies: [
        "Ingest", "Subscribe", "Broadcast", "EventLog", "Events", "Compression",
        "SyntheticFirehose", "URLQuery",
        "RelayFixture",
        "DefaultDictionary",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "Prometheus", package: "swift-prometheus"),
      ] + websocket),
    .executableTarget(
      name: "contrail",
      dependencies: [
        "Firehose", "Events", "Compression", "EventLog", "SyntheticFirehose", "RelayFixture",
        "Broadcast",
        "Subscribe", "Ingest", "App", "DefaultDictionary", "WebSocketClient",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ] + websocket),
    .target(
      name: "TestSupport",
      dependencies: [
        "Firehose", "Events", "Compression", "EventLog", "Broadcast", "Ingest", "Subscribe",
        "SyntheticFirehose", "WebSocketClient",
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "Logging", package: "swift-log"),
      ] + websocket,
      path: "Tests/TestSupport"),
    .testTarget(
      name: "FirehoseTests", dependencies: ["Firehose", "SyntheticFirehose", "TestSupport"]),
    .testTarget(
      name: "CompressionTests", dependencies: ["Compression", "CZstd", "TestSupport"]),
    .testTarget(
      name: "SubscribeTests",
      dependencies: [
        "Subscribe", "Events", "Broadcast", "EventLog", "Compression", "SyntheticFirehose",
        "URLQuery", "Ingest", "TestSupport",
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "NIOEmbedded", package: "swift-nio"),
      ]),
    .testTarget(
      name: "IngestTests",
      dependencies: [
        "Ingest", "App", "Subscribe", "Events", "Broadcast", "EventLog", "Compression",
        "SyntheticFirehose", "RelayFixture", "TestSupport", "DefaultDictionary",
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOSSL", package: "swift-nio-ssl"),
        .product(name: "NIOEmbedded", package: "swift-nio"),
      ]),
    .testTarget(
      name: "BroadcastTests",
      dependencies: [
        "Broadcast", "EventLog", "Events", "Compression", "SyntheticFirehose", "TestSupport",
      ]),
    .testTarget(
      name: "EventLogTests",
      dependencies: ["EventLog", "Events", "Compression", "SyntheticFirehose", "TestSupport"]),
    .testTarget(
      name: "SyntheticFirehoseTests",
      dependencies: ["SyntheticFirehose", "Firehose", "Events", "TestSupport"]),
    .testTarget(
      name: "RelayFixtureTests",
      dependencies: ["RelayFixture", "SyntheticFirehose", "Firehose", "TestSupport"]),
    .testTarget(name: "URLQueryTests", dependencies: ["URLQuery"]),
    .testTarget(
      name: "LabelledMetricsTests",
      dependencies: [
        "LabelledMetrics", .product(name: "MetricsTestKit", package: "swift-metrics"),
      ]),
    .testTarget(
      name: "EventsTests",
      dependencies: ["Events", "Firehose", "SyntheticFirehose", "TestSupport"]),
  ]
)
