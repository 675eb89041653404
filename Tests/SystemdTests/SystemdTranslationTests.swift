import Cgroups
import DBus
import OCI
@testable import Systemd
import Testing

struct SystemdCgroupPathTests {
    @Test func slicePrefixAndNameBecomeAScopeInItsSlice() throws {
        let p = try SystemdCgroupPath("kubepods-besteffort-pod12.slice:cri-containerd:abc", containerID: "abc")
        #expect(p.slice == "kubepods-besteffort-pod12.slice")
        #expect(p.unit == "cri-containerd-abc.scope")
        #expect(p.cgroupPath == "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-abc.scope")
        #expect(try SystemdCgroupPath("system.slice:docker:c1", containerID: "c1").cgroupPath == "/system.slice/docker-c1.scope")
        #expect(try SystemdCgroupPath("-.slice::c1", containerID: "c1").cgroupPath == "/c1.scope")
        #expect(try SystemdCgroupPath(":cocoon:c1", containerID: "c1").slice == "system.slice")
        let d = try SystemdCgroupPath(nil, containerID: "c9")
        #expect(d.unit == "cocoon-c9.scope" && d.slice == "system.slice")
    }

    @Test func badPathsAreNamedWithTheFormExpected() {
        for bad in ["/cocoon/c1", "a:b", "a:b:c:d", "user:cocoon:c1", "-bad.slice:x:c1", "a--b.slice:x:c1", "system.slice:x:",
                    "system.slice:x:sub.slice", "system.slice:x:c/1", "sys/tem.slice:x:c1"] {
            do {
                _ = try SystemdCgroupPath(bad, containerID: "c1")
                Issue.record("'\(bad)' was accepted")
            } catch {
                #expect(error.code == .invalidArgument)
                #expect(error.message.contains("linux.cgroupsPath '\(bad)'"), "\(error.message)")
            }
        }
    }
}

struct UnitPropertiesTests {
    static func names(_ p: [(String, DBusValue)]) -> [String: DBusValue] {
        Dictionary(p.map { ($0.0, $0.1) }, uniquingKeysWith: { $1 })
    }

    @Test func limitsUseTheNamesOfTheHostsCgroupVersion() throws {
        let r = Resources(memory: .init(limit: 64 << 20), cpu: .init(shares: 512, quota: 50_000, period: 100_000),
                          pids: .init(limit: 100))
        let v1 = Self.names(try UnitProperties.resources(r, mode: .hybrid, procDevices: ""))
        #expect(v1["MemoryLimit"] == .uint64(64 << 20))
        #expect(v1["CPUShares"] == .uint64(512))
        #expect(v1["CPUQuotaPerSecUSec"] == .uint64(500_000))
        #expect(v1["TasksMax"] == .uint64(100))
        #expect(v1["MemoryMax"] == nil)
        let v2 = Self.names(try UnitProperties.resources(r, mode: .unified, procDevices: ""))
        #expect(v2["MemoryMax"] == .uint64(64 << 20))
        #expect(v2["CPUWeight"] == .uint64(CgroupManager.cpuWeight(shares: 512)))
        #expect(v2["IOAccounting"] == .boolean(true))
        // -1 is "no limit", 0 is "leave it".
        let unlimited = Self.names(try UnitProperties.resources(Resources(memory: .init(limit: -1), pids: .init(limit: 0)), mode: .hybrid))
        #expect(unlimited["MemoryLimit"] == .uint64(.max))
        #expect(unlimited["TasksMax"] == nil)
    }

    @Test func quotaRoundsUpToWholePercent() {
        #expect(UnitProperties.quotaPerSecond(quota: 12_345, period: 100_000) == 130_000)
        #expect(UnitProperties.quotaPerSecond(quota: 200_000, period: nil) == 2_000_000)
    }

    static let procDevices = """
        Character devices:
          1 mem
          5 /dev/tty
        136 pts
        226 drm

        Block devices:
          7 loop
        254 virtblk
        """

    @Test func aDenyAllListBecomesAStrictAllowList() throws {
        let rules: [DeviceCgroupRule] = [
            .init(allow: false, access: "rwm"),
            .init(allow: true, type: "c", major: 226, access: "rw"),   // every drm device
            .init(allow: true, type: "b", major: 7, minor: 2, access: "r"),
            .init(allow: true, type: "c", major: 99, access: "rw"),    // no driver: nothing to allow
            .init(allow: true, type: "c", major: 10, minor: 229, access: "rwm"),
            .init(allow: false, type: "c", major: 10, minor: 229, access: "w"),  // narrows the one above: left out
        ]
        let p = Self.names(try UnitProperties.devices(rules + defaultDeviceRules, procDevices: Self.procDevices))
        #expect(p["DevicePolicy"] == .string("strict"))
        guard case .array("(ss)", let allow)? = p["DeviceAllow"] else { Issue.record("no DeviceAllow"); return }
        let entries = allow.compactMap { v -> String? in
            guard case .structure(let f) = v, f.count == 2, let a = f[0].string, let b = f[1].string else { return nil }
            return "\(a) \(b)"
        }
        #expect(entries.contains("char-drm rw"))
        #expect(entries.contains("/dev/block/7:2 r"))
        #expect(!entries.contains { $0.hasPrefix("/dev/char/10:229") })
        #expect(!entries.contains { $0.contains("99") })
        // cocoon's defaults: mknod of anything, the standard nodes, ptys.
        #expect(entries.contains("char-* m") && entries.contains("block-* m"))
        #expect(entries.contains("/dev/char/1:3 rwm") && entries.contains("char-pts rwm"))
    }

    @Test func anAllowEverythingListIsAutoAndADenyListWithoutDenyAllIsRefused() throws {
        let privileged = Self.names(try UnitProperties.devices([.init(allow: true, access: "rwm")], procDevices: ""))
        #expect(privileged["DevicePolicy"] == .string("auto") && privileged["DeviceAllow"] == nil)
        do {
            _ = try UnitProperties.devices([.init(allow: false, type: "c", major: 1, minor: 3, access: "rwm")], procDevices: "")
            Issue.record("a deny list systemd cannot keep was accepted")
        } catch {
            #expect(error.code == .invalidArgument)
            #expect(error.message.contains("linux.resources.devices"))
        }
    }
}
