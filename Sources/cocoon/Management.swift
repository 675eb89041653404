import ArgumentParser
import Cgroups
import Foundation
import LinuxContainer
import OCI
import SandboxDaemon

struct Pause: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pause", abstract: "Freeze every process of a container.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The container id.") var id: String
    func run() throws {
        try runtimeCommand(global) { config, logger in
            switch try RuntimeChoice.forExisting(id, config, global, logger) {
            case .process(let runtime): try runtime.pause(id)
            case .vm(let runtime): try runtime.pause(id)
            }
        }
    }
}

struct Resume: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Thaw a paused container.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The container id.") var id: String
    func run() throws {
        try runtimeCommand(global) { config, logger in
            switch try RuntimeChoice.forExisting(id, config, global, logger) {
            case .process(let runtime): try runtime.resume(id)
            case .vm(let runtime): try runtime.resume(id)
            }
        }
    }
}

struct Ps: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ps", abstract: "List the processes of a container.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .long], help: "table or json.") var format: String = "table"
    @Argument(help: "The container id.") var id: String
    @Argument(parsing: .captureForPassthrough, help: "ps options (table format only).") var psArguments: [String] = []

    func run() throws {
        try runtimeCommand(global) { config, logger in
            guard ["table", "json"].contains(format) else { throw CLIError("--format must be table or json, not '\(format)'") }
            let pids: [Int32]
            switch try RuntimeChoice.forExisting(id, config, global, logger) {
            case .process(let runtime): pids = try runtime.processes(id)
            case .vm(let runtime):
                // Guest PIDs: the processes live in the VM, not on this host.
                pids = try runtime.processes(id)
                if format == "json" {
                    print("[" + pids.map(String.init).joined(separator: ",") + "]")
                } else {
                    print("PID (in the VM)")
                    pids.forEach { print($0) }
                }
                return
            }
            if format == "json" {
                print("[" + pids.map(String.init).joined(separator: ",") + "]")
                return
            }
            print("PID\tCMD")
            for pid in pids {
                let cmd = ((try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? "")
                    .split(separator: "\0").joined(separator: " ")
                print("\(pid)\t\(cmd)")
            }
        }
    }
}

struct Update: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "update", abstract: "Change a running container's resource limits.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .long], help: "A linux.resources JSON file, or - for standard input.") var resources: String?
    @Option(help: "Memory limit in bytes.") var memory: Int64?
    @Option(help: "Maximum number of processes.") var pidsLimit: Int64?
    @Option(help: "CPU CFS quota in microseconds.") var cpuQuota: Int64?
    @Option(help: "CPU CFS period in microseconds.") var cpuPeriod: UInt64?
    @Option(help: "CPU shares (relative weight).") var cpuShare: UInt64?
    @Argument(help: "The container id.") var id: String

    func run() throws {
        try runtimeCommand(global) { config, logger in
            var r = Resources()
            if let resources {
                let data = resources == "-" ? FileHandle.standardInput.readDataToEndOfFile()
                    : try Data(contentsOf: URL(fileURLWithPath: resources))
                do { r = try JSONDecoder().decode(Resources.self, from: data) } catch {
                    throw CLIError("--resources \(resources): not a valid linux.resources object: \(error)")
                }
            }
            if let memory { r.memory = MemoryResources(limit: memory, reservation: r.memory?.reservation, swap: r.memory?.swap) }
            if let pidsLimit { r.pids = PidsResources(limit: pidsLimit) }
            if cpuQuota != nil || cpuPeriod != nil || cpuShare != nil {
                var cpu = r.cpu ?? CPUResources()
                if let cpuQuota { cpu.quota = cpuQuota }
                if let cpuPeriod { cpu.period = cpuPeriod }
                if let cpuShare { cpu.shares = cpuShare }
                r.cpu = cpu
            }
            // The same validation as config.json, reported against the option.
            let probe = OCI.Spec(linux: Linux(resources: r))
            if let problem = probe.problems(file: "--resources").first { throw CLIError(problem.message) }
            switch try RuntimeChoice.forExisting(id, config, global, logger) {
            case .process(let runtime): try runtime.update(id, resources: r)
            case .vm(let runtime): try runtime.update(id, resources: r)
            }
        }
    }
}

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "events", abstract: "Print container statistics (--stats: once).")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print the statistics once and exit.") var stats = false
    @Option(help: "Seconds between statistics when streaming.") var interval: Double = 5
    @Argument(help: "The container id.") var id: String

    func run() throws {
        try runtimeCommand(global) { config, logger in
            guard interval >= 0.1 && interval <= 3600 else { throw CLIError("--interval must be between 0.1 and 3600 seconds") }
            let choice = try RuntimeChoice.forExisting(id, config, global, logger)
            repeat {
                switch choice {
                case .process(let runtime): print(Self.render(id: id, try runtime.stats(id)))
                case .vm(let runtime):
                    // The guest's cgroup of the container.
                    let g = try runtime.stats(id)
                    print(Self.render(id: id, cpu: g.cpuUsageNanoseconds, memory: g.memoryUsageBytes, memoryLimit: g.memoryLimitBytes,
                                      pids: g.pidsCurrent, pidsLimit: g.pidsLimit))
                }
                if stats { return }
                Thread.sleep(forTimeInterval: interval)
            } while true
        }
    }

    /// runc's event shape: {"type":"stats","id":...,"data":{cpu, memory, pids}}.
    static func render(id: String, _ s: CgroupStats) -> String {
        render(id: id, cpu: s.cpuUsageNanoseconds ?? 0, memory: s.memoryUsageBytes ?? 0, memoryLimit: s.memoryLimitBytes ?? 0,
               pids: s.pidsCurrent ?? 0, pidsLimit: s.pidsLimit ?? 0)
    }

    static func render(id: String, cpu: UInt64, memory: UInt64, memoryLimit: UInt64, pids: UInt64, pidsLimit: UInt64) -> String {
        let data: [String: Any] = [
            "cpu": ["usage": ["total": cpu]],
            "memory": ["usage": ["usage": memory, "limit": memoryLimit]],
            "pids": ["current": pids, "limit": pidsLimit],
        ]
        let event: [String: Any] = ["type": "stats", "id": id, "data": data]
        let json = (try? JSONSerialization.data(withJSONObject: event, options: [.sortedKeys])) ?? Data()
        return String(decoding: json, as: UTF8.self)
    }
}
