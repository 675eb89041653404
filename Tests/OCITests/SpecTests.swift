import Foundation
import OCI
import Testing

@Suite struct SpecDecodingTests {
    let minimal = """
        {"ociVersion":"1.0.2","process":{"user":{"uid":0,"gid":0},"args":["sh"],"cwd":"/"},
         "root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}
        """

    func decode(_ json: String) throws(OCIError) -> Spec {
        try Spec.decode(Array(json.utf8), file: "/b/config.json")
    }

    func error(_ json: String) -> OCIError? {
        do {
            let spec = try decode(json)
            try spec.validate(file: "/b/config.json")
            return nil
        } catch {
            return error
        }
    }

    @Test func decodesMinimal() throws {
        let spec = try decode(minimal)
        #expect(spec.process?.args == ["sh"])
        #expect(spec.root?.path == "rootfs")
        #expect(spec.linux?.namespaces?.map(\.type) == [.pid, .mount])
        try spec.validate(file: "/b/config.json")
    }

    @Test func unknownFieldsAreIgnored() throws {
        let spec = try decode(#"{"ociVersion":"1.2.0","vm":{"hypervisor":{}},"root":{"path":"r"}}"#)
        #expect(spec.root?.path == "r")
    }

    @Test func typeErrorNamesTheJSONPath() throws {
        let e = try #require(error(#"{"ociVersion":"1.0.0","process":{"user":{"uid":"root","gid":0},"args":["sh"],"cwd":"/"}}"#))
        #expect(e.path == "process.user.uid")
        #expect(e.message.contains("non-negative integer"))
        #expect(e.message.hasPrefix("/b/config.json: process.user.uid:"))
    }

    @Test func arrayIndicesAppearInThePath() throws {
        let e = try #require(error(#"{"ociVersion":"1.0.0","linux":{"namespaces":[{"type":"pid"},{"type":"nett"}]}}"#))
        #expect(e.path == "linux.namespaces[1].type")
    }

    @Test func missingRequiredField() throws {
        let e = try #require(error(#"{"ociVersion":"1.0.0","process":{"user":{"uid":0,"gid":0},"args":["sh"]}}"#))
        #expect(e.path == "process.cwd")
        #expect(e.message.contains("required"))
    }

    @Test func notJSON() throws {
        let e = try #require(error("{oops"))
        #expect(e.path == "")
        #expect(e.message.contains("not valid JSON"))
    }

    @Test func roundTrip() throws {
        let spec = try decode(minimal)
        let again = try Spec.decode(spec.encoded(), file: "x")
        #expect(again == spec)
    }
}

@Suite struct SpecValidationTests {
    func spec(_ edit: (inout Spec) -> Void) -> Spec {
        var s = Spec(process: Process(args: ["sh"], env: ["PATH=/bin"], cwd: "/"), root: Root(path: "rootfs"),
                     linux: Linux(namespaces: [Namespace(type: .pid), Namespace(type: .mount), Namespace(type: .uts)]))
        edit(&s)
        return s
    }

    func paths(_ s: Spec) -> [String] { s.problems(file: "c.json").map(\.path) }

    /// The JSON paths of the problems found after `edit`, compared with `expected`.
    func expectProblems(_ expected: [String], sourceLocation: SourceLocation = #_sourceLocation, _ edit: (inout Spec) -> Void) {
        let found = paths(spec(edit))
        #expect(found == expected, sourceLocation: sourceLocation)
    }

    @Test func validSpecHasNoProblems() {
        expectProblems([]) { _ in }
    }

    @Test func process() {
        expectProblems(["process.args"]) { $0.process?.args = [] }
        expectProblems(["process.args[0]"]) { $0.process?.args = [""] }
        expectProblems(["process.cwd"]) { $0.process?.cwd = "tmp" }
        expectProblems(["process.env[1]"]) { $0.process?.env = ["PATH=/bin", "NOEQUALS"] }
        expectProblems(["process.env[0]"]) { $0.process?.env = ["=x"] }
        expectProblems(["process.consoleSize"]) { $0.process?.consoleSize = Box(height: 1, width: 1) }
        expectProblems(["process.oomScoreAdj"]) { $0.process?.oomScoreAdj = 1001 }
        expectProblems(["process.rlimits[0]"]) { $0.process?.rlimits = [Rlimit(type: "RLIMIT_NOFILE", hard: 1, soft: 2)] }
        expectProblems(["process.rlimits[0].type"]) { $0.process?.rlimits = [Rlimit(type: "RLIMIT_FOO", hard: 1, soft: 1)] }
        expectProblems(["process.capabilities.bounding[1]"]) { $0.process?.capabilities = Capabilities(bounding: ["CAP_CHOWN", "CAP_NOPE"]) }
        expectProblems([]) { $0.process?.capabilities = Capabilities(effective: ["CAP_CHECKPOINT_RESTORE"]) }
    }

    @Test func versions() {
        expectProblems([]) { $0.ociVersion = "1.1.0" }
        expectProblems([]) { $0.ociVersion = "1.0.2-dev" }
        expectProblems(["ociVersion"]) { $0.ociVersion = "0.9.0" }
        expectProblems(["ociVersion"]) { $0.ociVersion = "2.0.0" }
    }

    @Test func hostnameNeedsUTSNamespace() {
        expectProblems([]) { $0.hostname = "box" }
        expectProblems(["hostname"]) {
            $0.hostname = "box"
            $0.linux?.namespaces = [Namespace(type: .mount)]
        }
        expectProblems(["hostname"]) {
            $0.hostname = "box"
            $0.linux?.namespaces = [Namespace(type: .uts, path: "/proc/1/ns/uts")]
        }
    }

    @Test func namespacesAndMappings() {
        expectProblems(["linux.namespaces[3].type"]) { $0.linux?.namespaces?.append(Namespace(type: .pid)) }
        expectProblems(["linux.namespaces[3].path"]) { $0.linux?.namespaces?.append(Namespace(type: .network, path: "netns")) }
        expectProblems(["linux.uidMappings"]) { $0.linux?.uidMappings = [IDMapping(containerID: 0, hostID: 1000, size: 1)] }
        expectProblems(["linux.uidMappings"]) { $0.linux?.namespaces?.append(Namespace(type: .user)) }
        expectProblems(["linux.uidMappings[0].size"]) {
            $0.linux?.namespaces?.append(Namespace(type: .user))
            $0.linux?.uidMappings = [IDMapping(containerID: 0, hostID: 1000, size: 0)]
            $0.linux?.gidMappings = [IDMapping(containerID: 0, hostID: 1000, size: 1)]
        }
    }

    @Test func timeOffsetsPersonalityAndIntelRdt() {
        expectProblems(["linux.timeOffsets"]) { $0.linux?.timeOffsets = ["boottime": TimeOffset(secs: 1)] }
        expectProblems([]) {
            $0.linux?.namespaces?.append(Namespace(type: .time))
            $0.linux?.timeOffsets = ["boottime": TimeOffset(secs: 1), "monotonic": TimeOffset(secs: -5, nanosecs: 999_999_999)]
        }
        expectProblems(["linux.timeOffsets.boottime.nanosecs", "linux.timeOffsets.realtime"]) {
            $0.linux?.namespaces?.append(Namespace(type: .time))
            $0.linux?.timeOffsets = ["realtime": TimeOffset(secs: 1), "boottime": TimeOffset(nanosecs: 1_000_000_000)]
        }
        expectProblems([]) { $0.linux?.personality = Personality(domain: "LINUX32") }
        expectProblems(["linux.personality.domain"]) { $0.linux?.personality = Personality(domain: "linux") }
        expectProblems(["linux.personality.flags"]) { $0.linux?.personality = Personality(domain: "LINUX", flags: ["X"]) }
        expectProblems(["linux.intelRdt"]) { $0.linux?.intelRdt = IntelRdt(closID: "c", l3CacheSchema: "L3:0=f") }
    }

    @Test func devicesMountsAndPaths() {
        expectProblems(["linux.devices[0].type"]) { $0.linux?.devices = [Device(type: "x", path: "/dev/x", major: 1, minor: 1)] }
        expectProblems(["linux.devices[0]"]) { $0.linux?.devices = [Device(type: "c", path: "/dev/x")] }
        expectProblems(["linux.devices[0].path"]) { $0.linux?.devices = [Device(type: "c", path: "dev/x", major: 1, minor: 3)] }
        expectProblems(["mounts[0].destination"]) { $0.mounts = [Mount(destination: "/a/../../etc")] }
        expectProblems(["linux.maskedPaths[1]"]) { $0.linux?.maskedPaths = ["/proc/kcore", "proc/x"] }
        expectProblems(["linux.cgroupsPath"]) { $0.linux?.cgroupsPath = "/a/../b" }
        expectProblems(["linux.rootfsPropagation"]) { $0.linux?.rootfsPropagation = "everywhere" }
        expectProblems(["linux.sysctl"]) { $0.linux?.sysctl = ["net/ipv4": "1"] }
        var hooks = Hooks()
        hooks.prestart = [Hook(path: "hook"), Hook(path: "/bin/true", timeout: 0)]
        expectProblems(["hooks.prestart[0].path", "hooks.prestart[1].timeout"]) { $0.hooks = hooks }
    }

    @Test func resources() {
        expectProblems(["linux.resources.memory.limit"]) { $0.linux?.resources = Resources(memory: MemoryResources(limit: -2)) }
        expectProblems([]) { $0.linux?.resources = Resources(memory: MemoryResources(limit: 0)) }
        expectProblems([]) { $0.linux?.resources = Resources(memory: MemoryResources(limit: -1)) }
        expectProblems(["linux.resources.memory.swap"]) { $0.linux?.resources = Resources(memory: MemoryResources(limit: 100, swap: 50)) }
        expectProblems(["linux.resources.cpu.quota"]) { $0.linux?.resources = Resources(cpu: CPUResources(quota: -5)) }
        expectProblems([]) { $0.linux?.resources = Resources(cpu: CPUResources(quota: 0, period: 0)) }
        expectProblems(["linux.resources.cpu.period"]) { $0.linux?.resources = Resources(cpu: CPUResources(period: 10)) }
        expectProblems(["linux.resources.cpu.cpus"]) { $0.linux?.resources = Resources(cpu: CPUResources(cpus: "0-1;rm")) }
        expectProblems(["linux.resources.devices[0].type", "linux.resources.devices[0].access"]) { $0.linux?.resources = Resources(devices: [DeviceCgroupRule(allow: true, type: "z", access: "rwx")]) }
        expectProblems(["linux.resources.unified"]) { $0.linux?.resources = Resources(unified: ["../memory.max": "1"]) }
    }

    @Test func seccomp() {
        let good = Seccomp(defaultAction: "SCMP_ACT_ALLOW", architectures: ["SCMP_ARCH_X86_64"],
                           syscalls: [SyscallRule(names: ["mkdir"], action: "SCMP_ACT_ERRNO", errnoRet: 1,
                                                  args: [SyscallArg(index: 1, value: 0, op: "SCMP_CMP_EQ")])])
        expectProblems([]) { $0.linux?.seccomp = good }
        var bad = good
        bad.defaultAction = "ALLOW"
        bad.syscalls![0].args![0].index = 6
        bad.syscalls![0].args![0].op = "EQ"
        bad.flags = ["SECCOMP_FILTER_FLAG_NOPE"]
        expectProblems([
            "linux.seccomp.defaultAction", "linux.seccomp.flags[0]",
            "linux.seccomp.syscalls[0].args[0].index", "linux.seccomp.syscalls[0].args[0].op",
        ]) { $0.linux?.seccomp = bad }
    }

    @Test func loadFromBundle() throws {
        let dir = NSTemporaryDirectory() + "oci-bundle-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            _ = try Spec.load(bundle: dir)
            Issue.record("loaded a bundle without config.json")
        } catch {
            #expect(error.code == .notFound)
            #expect(error.message.contains("config.json"))
        }
        try Data(spec { _ in }.encoded()).write(to: URL(fileURLWithPath: dir + "/config.json"))
        #expect(try Spec.load(bundle: dir).process?.args == ["sh"])
    }

    @Test func capabilityNumbersFollowTheKernel() {
        #expect(CapabilityNames.number("CAP_CHOWN") == 0)
        #expect(CapabilityNames.number("CAP_SYS_ADMIN") == 21)
        #expect(CapabilityNames.number("CAP_CHECKPOINT_RESTORE") == 40)
    }
}
