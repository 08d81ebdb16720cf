import App
import Events
import Ingest
import NIOCore
import Subscribe
import XCTest

/// `serve`'s settings resolution, without a subprocess: a flag beats its variable, which beats
/// the default; every option takes a good value and refuses a bad one with a message naming it.
final class ServeOptionsTests: XCTestCase {
  private func resolve(_ flags: [ServeOption: String] = [:], _ environment: [String: String] = [:])
    throws -> ServeConfiguration
  {
    try ServeConfiguration.resolve(flags: flags, environment: environment)
  }

  func testFlagBeatsVariableBeatsDefault() throws {
    XCTAssertEqual(try resolve().settings.port, 6008)
    XCTAssertEqual(try resolve([:], ["CONTRAIL_PORT": "7000"]).settings.port, 7000)
    XCTAssertEqual(try resolve([.port: "7001"], ["CONTRAIL_PORT": "7000"]).settings.port, 7001)
    XCTAssertEqual(try resolve([:], ["CONTRAIL_PORT": ""]).settings.port, 6008, "empty is unset")
    // A bad variable is an error even when nothing else is given…
    XCTAssertThrowsError(try resolve([:], ["CONTRAIL_PORT": "x"]))
    // …but a flag overrides it unread.
    XCTAssertEqual(try resolve([.port: "7001"], ["CONTRAIL_PORT": "x"]).settings.port, 7001)
    XCTAssertTrue(try resolve([:], ["CONTRAIL_OFFLINE": "yes"]).settings.offline)
  }

  func testDefaultsAreServeSettingsDefaults() throws {
    let resolved = try resolve()
    let defaults = ServeSettings.defaults
    XCTAssertEqual(resolved.settings.relay, try RelayEndpoint("wss://bsky.network"))
    XCTAssertEqual(resolved.settings.compressionLevel, defaults.compressionLevel)
    XCTAssertEqual(resolved.settings.retentionMicroseconds, 24 * 3_600_000_000)
    XCTAssertEqual(resolved.settings.limits.maxPendingConnections, 1024)
    XCTAssertEqual(resolved.settings.staleAfter, .seconds(60))
    XCTAssertEqual(resolved.logLevel, .info)
    XCTAssertFalse(resolved.jsonLogs)
    XCTAssertTrue(resolved.metrics)
  }

  /// Each option with a value it takes and what that sets, and a value it refuses.
  func testEveryOptionTakesGoodValuesAndRefusesBadOnes() throws {
    let good: [ServeOption: (String, (ServeConfiguration) -> Bool)] = [
      .relay: ("wss://relay.example", { $0.settings.relay.host == "relay.example" }),
      .relayCursor: ("42", { $0.settings.relayStart == .seq(42) }),
      .offline: ("true", { $0.settings.offline }),
      .offlineRate: ("50", { $0.settings.offlineRate == 50 }),
      .host: ("127.0.0.1", { $0.settings.host == "127.0.0.1" }),
      .port: ("0", { $0.settings.port == 0 }),
      .dataDir: ("/tmp/x", { $0.settings.dataDirectory == "/tmp/x" }),
      .retention: ("90m", { $0.settings.retentionMicroseconds == 90 * 60_000_000 }),
      .maxDisk: ("2GiB", { $0.settings.maxDiskBytes == 2 << 30 }),
      .dictionary: ("d.zdict", { $0.settings.dictionaryPath == "d.zdict" }),
      .compressionLevel: ("3", { $0.settings.compressionLevel == 3 }),
      .fsyncInterval: ("250ms", { $0.settings.fsyncMilliseconds == 250 }),
      .liveWindow: ("100", { $0.settings.liveWindowEvents == 100 }),
      .maxLag: ("10m", { $0.settings.slowConsumer.maxLag == .minutes(10) }),
      .maxLagGrace: ("5s", { $0.settings.slowConsumer.grace == .seconds(5) }),
      .maxSubscribers: ("9", { $0.settings.limits.maxSubscribers == 9 }),
      .maxConnectionsPerIP: ("2", { $0.settings.limits.maxConnectionsPerIP == 2 }),
      .maxEventsPerSecondPerIP: ("30", { $0.settings.limits.maxEventsPerSecondPerIP == 30 }),
      .maxPendingConnections: ("8", { $0.settings.limits.maxPendingConnections == 8 }),
      .trustedProxies: (
        "10.0.0.0/8", { $0.settings.trustedProxies.isTrusted("10.1.2.3") }
      ),
      .headerTimeout: ("3s", { $0.settings.headerTimeout == .seconds(3) }),
      .idleTimeout: ("2m", { $0.settings.idleTimeout == .minutes(2) }),
      .staleAfter: ("0", { $0.settings.staleAfter == nil }),
      .maxFrameSize: ("1MiB", { $0.settings.maxFrameSize == 1 << 20 }),
      .relayCA: ("ca.pem", { $0.settings.relayCertificates == "ca.pem" }),
      .upstream: ("ws://10.0.0.5:6008", { $0.settings.upstream?.host == "10.0.0.5" }),
      .replicationAllow: (
        "10.0.0.0/8", { $0.settings.replicationAllowed?.isTrusted("10.9.9.9") == true }
      ),
      .collections: (
        "app.bsky.feed.post", { $0.settings.ingestFilter.collections == ["app.bsky.feed.post"] }
      ),
      .dids: ("did:plc:abc", { $0.settings.ingestFilter.dids == ["did:plc:abc"] }),
      .metrics: ("off", { !$0.metrics }),
      .logLevel: ("DEBUG", { $0.logLevel == .debug }),
      .logFormat: ("json", { $0.jsonLogs }),
    ]
    XCTAssertEqual(Set(good.keys), Set(ServeOption.allCases), "every option is covered")
    for (option, (text, holds)) in good {
      XCTAssertTrue(holds(try resolve([option: text])), "\(option.flag) \(text)")
      XCTAssertTrue(holds(try resolve([:], [option.variable: text])), "\(option.variable)=\(text)")
    }
    // Free text (paths, addresses to bind) takes anything; everything else refuses nonsense.
    let freeText: Set<ServeOption> = [.host, .dataDir, .dictionary, .relayCA]
    let bad: [ServeOption: String] = [
      .relayCursor: "-1", .port: "65536", .compressionLevel: "20", .retention: "-5m",
      .maxFrameSize: "2GiB", .headerTimeout: "0", .relay: "ftp://x", .maxDisk: "0",
      .upstream: "ftp://x",
    ]
    for option in ServeOption.allCases where !freeText.contains(option) {
      let text = bad[option] ?? "nonsense"
      XCTAssertThrowsError(try resolve([option: text]), "\(option.flag) \(text)") { error in
        let message = "\(option.flag) / \(option.variable): cannot use \"\(text)\""
        if option == .collections || option == .dids {
          XCTAssertTrue("\(error)".hasPrefix(message + ": "), "\(error)")  // and says why
        } else {
          XCTAssertEqual("\(error)", message)
        }
      }
    }
  }

  /// `--collections` and `--dids` make one ingest filter that passes every kind; either may come
  /// from a flag or a variable, lists are comma-separated with spaces allowed around items.
  func testIngestFilterOptions() throws {
    XCTAssertTrue(try resolve().settings.ingestFilter.isEmpty, "no filter by default")
    let both = try resolve(
      [.collections: "app.bsky.feed.post, app.bsky.graph.*,"],
      ["CONTRAIL_DIDS": "did:plc:abc,did:web:example.com"]
    ).settings.ingestFilter
    XCTAssertEqual(both.collectionPatterns, ["app.bsky.feed.post", "app.bsky.graph.*"])
    XCTAssertEqual(both.dids, ["did:plc:abc", "did:web:example.com"])
    XCTAssertEqual(both.kinds, Set(EventKind.allCases), "identity, account and sync still flow")
    let abc = "did:plc:abc"
    XCTAssertTrue(both.matches(kind: .commit, did: abc, collection: "app.bsky.feed.post"))
    XCTAssertTrue(both.matches(kind: .commit, did: abc, collection: "app.bsky.graph.follow"))
    XCTAssertFalse(both.matches(kind: .commit, did: abc, collection: "app.bsky.feed.like"))
    XCTAssertFalse(
      both.matches(kind: .commit, did: "did:plc:xyz", collection: "app.bsky.feed.post"))
    for kind in [EventKind.identity, .account, .sync] {
      XCTAssertTrue(both.matches(kind: kind, did: "did:web:example.com", collection: ""), "\(kind)")
      XCTAssertFalse(both.matches(kind: kind, did: "did:plc:xyz", collection: ""), "\(kind)")
    }
    let collectionsOnly = try resolve([:], ["CONTRAIL_COLLECTIONS": "app.*"]).settings.ingestFilter
    XCTAssertTrue(collectionsOnly.dids.isEmpty)
    XCTAssertTrue(collectionsOnly.matches(kind: .identity, did: "did:plc:any", collection: ""))
    XCTAssertTrue(
      collectionsOnly.matches(kind: .commit, did: "did:plc:any", collection: "app.bsky.feed.post"))
    XCTAssertFalse(
      collectionsOnly.matches(kind: .commit, did: "did:plc:any", collection: "fm.teal.alpha.x"))
    // The flag wins over the variable, and only for its own half of the filter.
    let flagWins = try resolve(
      [.dids: "did:plc:flag"],
      ["CONTRAIL_DIDS": "did:plc:variable", "CONTRAIL_COLLECTIONS": "a.b.c"]
    ).settings.ingestFilter
    XCTAssertEqual(flagWins.dids, ["did:plc:flag"])
    XCTAssertEqual(flagWins.collectionPatterns, ["a.b.c"])

    // A bad value names the flag, the variable, the whole text and the first bad item.
    let nsid = " is not an NSID (app.bsky.feed.post) or an NSID prefix ending in .* (app.bsky.*)"
    let did = " is not a DID (did:plc:…, did:web:…)"
    let refused: [(ServeOption, String, String)] = [
      (.collections, "app.bsky.feed.post,app.bsky", #""app.bsky""# + nsid),
      (.collections, "app.bsky.feed.*,*", #""*""# + nsid),
      (.collections, ".*", #"".*""# + nsid),
      (.collections, "app.bsky.feed.post-v2", #""app.bsky.feed.post-v2""# + nsid),
      (.collections, " , ", "no values given"),
      (.dids, "did:plc:abc,plc:xyz", #""plc:xyz""# + did),
      (.dids, "did:PLC:abc", #""did:PLC:abc""# + did),
      (.dids, ",", "no values given"),
    ]
    for (option, text, why) in refused {
      for (flags, environment) in [([option: text], [:]), ([:], [option.variable: text])] {
        XCTAssertThrowsError(try resolve(flags, environment), text) { error in
          let expected = "\(option.flag) / \(option.variable): cannot use \"\(text)\": \(why)"
          XCTAssertEqual("\(error)", expected)
        }
      }
    }
  }

  func testHelpNamesTheVariableAndTheRealDefault() {
    for option in ServeOption.allCases {
      XCTAssertTrue(option.help.hasSuffix(" [\(option.variable)]"), option.help)
    }
    XCTAssertTrue(
      ServeOption.compressionLevel.help.contains(
        "(default \(ServeSettings.defaults.compressionLevel))"))
    XCTAssertTrue(ServeOption.retention.help.contains("(default 24h)"), ServeOption.retention.help)
    XCTAssertTrue(ServeOption.liveWindow.help.contains("(default 16384)"))
    XCTAssertTrue(ServeOption.maxFrameSize.help.contains("(default 5MiB)"))
  }

  /// `--upstream` follows a primary instead of a relay: with `--relay`, `--relay-cursor` or
  /// `--offline` (flag or variable) it is refused, saying why.
  func testUpstreamExcludesTheRelayOptions() throws {
    XCTAssertNotNil(try resolve([.upstream: "ws://127.0.0.1:6008"]).settings.upstream)
    for (option, text) in [(ServeOption.relay, "wss://x"), (.relayCursor, "5"), (.offline, "true")]
    {
      XCTAssertThrowsError(try resolve([.upstream: "ws://127.0.0.1:6008", option: text])) {
        XCTAssertTrue("\($0)".contains("cannot be combined"), "\($0)")
      }
      XCTAssertThrowsError(
        try resolve([:], ["CONTRAIL_UPSTREAM": "ws://127.0.0.1:6008", option.variable: text]))
    }
  }

  /// A Jetstream host's URL (a path ending in `/subscribe`) must leave out what the edge sets
  /// itself, and the filter must stay within a Jetstream's limits.
  func testAJetstreamUpstreamIsChecked() throws {
    for url in [
      "wss://jetstream.example/subscribe", "wss://x.example/jetstream/subscribe/",
      "ws://127.0.0.1:6008/subscribe?wantedCollections=app.bsky.feed.post",
    ] {
      XCTAssertEqual(try resolve([.upstream: url]).settings.upstream?.isJetstream, true, url)
    }
    XCTAssertEqual(
      try resolve([.upstream: "ws://127.0.0.1:6008"]).settings.upstream?.isJetstream, false)
    for parameter in ["cursor=5", "compress=false", "requireHello=true", "%63ompress=false"] {
      XCTAssertThrowsError(
        try resolve([.upstream: "wss://jetstream.example/subscribe?\(parameter)"])
      ) {
        XCTAssertTrue("\($0)".contains("leave"), "\($0)")
      }
    }
    let dids = (0...10_000).map { "did:plc:\($0)" }.joined(separator: ",")
    XCTAssertThrowsError(
      try resolve([.upstream: "wss://jetstream.example/subscribe", .dids: dids])
    ) {
      XCTAssertTrue("\($0)".contains("10,000 DIDs"), "\($0)")
    }
    // What the URL asks for counts too.
    let collections = (0..<100).map { "app.bsky.c\($0)" }.joined(separator: ",")
    XCTAssertNoThrow(
      try resolve([.upstream: "wss://jetstream.example/subscribe", .collections: collections]))
    XCTAssertThrowsError(
      try resolve([
        .upstream: "wss://jetstream.example/subscribe?wantedCollections=app.bsky.x",
        .collections: collections,
      ])
    ) {
      XCTAssertTrue("\($0)".contains("100 collections"), "\($0)")
    }
  }
}
