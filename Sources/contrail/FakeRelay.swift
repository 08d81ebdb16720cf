import ArgumentParser
import Firehose
import RelayFixture
import SyntheticFirehose

/// `contrail fake-relay`: a local relay stand-in serving a frames file or synthetic traffic.
struct FakeRelay: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "fake-relay",
    abstract: "Serve relay frames over websocket at /xrpc/com.atproto.sync.subscribeRepos.",
    discussion: """
      Without ?cursor a connection starts at the first frame held; ?cursor=N sends the frames \
      with seq > N (an older cursor first gets an #info OutdatedCursor frame). At the end of a \
      file the connection stays open and idle, or with --loop the frames repeat under new, \
      increasing seqs. --synthetic serves an endless generated firehose instead of a file.
      """)

  @Option(help: "A frames file to serve (plain or zstd).")
  var frames: String?

  @Flag(help: "Serve generated frames instead of a file.")
  var synthetic = false

  @Option(help: "The generator seed for --synthetic.")
  var seed: UInt64 = 1

  @Option(help: "The address to listen on.")
  var host = "127.0.0.1"

  @Option(help: "The port to listen on (0 picks a free one).")
  var port = 2470

  @Option(help: "Frames per second per connection (default: as fast as the client reads).")
  var rate: Int?

  @Flag(help: "Repeat the file under new seqs instead of going idle at its end.")
  var loop = false

  @Option(help: "Send a ConsumerTooSlow error frame and close after this many frames (testing).")
  var errorAfter: Int?

  func validate() throws {
    guard (frames == nil) != !synthetic else {
      throw ValidationError("give exactly one of --frames FILE and --synthetic")
    }
    if let rate, rate <= 0 { throw ValidationError("--rate must be positive") }
  }

  func run() async throws {
    let source: any RelaySource
    if let frames {
      let contents = try FramesFile.read(path: frames)
      source = FileRelaySource(frames: contents.frames, loop: loop)
      printError(
        "fake-relay: \(contents.frames.count) frames from \(frames)\(loop ? ", looping" : "")")
    } else {
      source = SyntheticRelaySource(seed: seed)
      printError("fake-relay: synthetic frames, seed \(seed)")
    }
    var configuration = FixtureRelay.Configuration()
    configuration.host = host
    configuration.port = port
    configuration.rate = rate
    configuration.errorAfter = errorAfter
    configuration.log = { printError($0) }
    let relay = FixtureRelay(source: source, configuration: configuration)
    let host = self.host
    try await relay.run(onBound: { port in
      printError("fake-relay: listening on ws://\(host):\(port)\(FixtureRelay.path)")
    })
  }
}
