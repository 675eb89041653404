import ArgumentParser
import Foundation
import LinuxContainer
import OCI

struct Spec: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "spec", abstract: "Write a default config.json into a bundle.")
    @Option(name: [.short, .long], help: "The bundle directory.") var bundle: String = "."

    func run() throws {
        let path = bundle + "/config.json"
        guard !FileManager.default.fileExists(atPath: path) else {
            throw CLIError("\(path) already exists: remove it first")
        }
        try Data(OCI.Spec.runcDefault().encoded()).write(to: URL(fileURLWithPath: path))
    }
}

struct FeaturesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "features",
        abstract: "Print what this runtime implements (the runtime-spec features document).")

    func run() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try encoder.encode(SupportedFeatures.document()), as: UTF8.self))
    }
}
