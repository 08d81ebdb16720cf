// swift-tools-version:6.0
// Fuzz targets for Contrail's parsers (libFuzzer). A separate package so that the root
// `swift build`/`swift test` never builds it; see FUZZING.md and `scripts/fuzz`.
//
//   swift build -c debug --product FuzzRecord \
//     -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
import PackageDescription

let package = Package(
  name: "ContrailFuzz",
  platforms: [.macOS(.v15)],
  dependencies: [
    .package(name: "Contrail", path: ".."),
    // NIOEmbedded's EmbeddedChannel drives the relay's websocket decoder (FuzzRelayMessage).
    .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
  ],
  targets: [
    .target(name: "FuzzSupport"),
    .executableTarget(
      name: "FuzzTranslator",
      dependencies: ["FuzzSupport", .product(name: "ContrailEvents", package: "Contrail")]),
    .executableTarget(
      name: "FuzzV2Frame",
      dependencies: [
        "FuzzSupport", .product(name: "ContrailEvents", package: "Contrail"),
        .product(name: "ContrailFirehose", package: "Contrail"),
      ]),
    .executableTarget(
      name: "FuzzCAR",
      dependencies: ["FuzzSupport", .product(name: "ContrailFirehose", package: "Contrail")]),
    .executableTarget(
      name: "FuzzRecord",
      dependencies: ["FuzzSupport", .product(name: "ContrailFirehose", package: "Contrail")]),
    .executableTarget(
      name: "FuzzQuery",
      dependencies: [
        "FuzzSupport", .product(name: "ContrailSubscribe", package: "Contrail"),
        .product(name: "ContrailURLQuery", package: "Contrail"),
      ]),
    .executableTarget(
      name: "FuzzClientMessage",
      dependencies: ["FuzzSupport", .product(name: "ContrailSubscribe", package: "Contrail")]),
    .executableTarget(
      name: "FuzzLogRecord",
      dependencies: ["FuzzSupport", .product(name: "ContrailEventLog", package: "Contrail")]),
    .executableTarget(
      name: "FuzzReplicationMessage",
      dependencies: ["FuzzSupport", .product(name: "ContrailEventLog", package: "Contrail")]),
    .executableTarget(
      name: "FuzzSegment",
      dependencies: ["FuzzSupport", .product(name: "ContrailEventLog", package: "Contrail")]),
    .executableTarget(
      name: "FuzzRelayMessage",
      dependencies: [
        "FuzzSupport", .product(name: "ContrailIngest", package: "Contrail"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOEmbedded", package: "swift-nio"),
      ]),
  ]
)
