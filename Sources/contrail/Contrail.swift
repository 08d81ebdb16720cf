import ArgumentParser
import Events

/// The `contrail` command line: thin commands over the modules.
@main
struct Contrail: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "contrail",
    abstract: "A Jetstream-compatible AT Protocol firehose translator.",
    version: ContrailVersion.string,
    subcommands: [
      ServeCommand.self, Tail.self, Translate.self, Generate.self, FakeRelay.self,
      TrainDictionary.self,
      Compress.self,
      Decompress.self, Inspect.self, Bench.self, LogWriter.self, LoadClient.self,
    ])
}
