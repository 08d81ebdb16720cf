import Foundation
import XCTest

/// Runs the `contrail` binary built next to the test bundle, as a user would.
public enum ContrailCommand {
  public struct NotBuilt: Error, CustomStringConvertible {
    public var description: String {
      "contrail is not built next to the tests; run `swift build --build-tests` first"
    }
  }

  public static func binary() throws -> URL {
    let candidate = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
      .appendingPathComponent("contrail")
    guard FileManager.default.isExecutableFile(atPath: candidate.path) else {
      throw NotBuilt()  // a failure, not a skip: the test cannot say anything without it
    }
    return candidate
  }

  /// Runs to completion; `environment` entries are added to this process's environment.
  public static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> (
    status: Int32, stdout: Data, stderr: String
  ) {
    let process = Process()
    process.executableURL = try binary()
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, stdout, String(decoding: stderr, as: UTF8.self))
  }
}
