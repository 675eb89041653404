import Cgroups
import SystemCalls
import Testing

/// Which hierarchies a container's `cgroup` mount is made of on a v1 host, from /proc/self/cgroup and
/// /proc/self/mountinfo.
@Suite struct CgroupHierarchyTests {
    // A hybrid host like Debian 10's systemd: co-mounted cpu,cpuacct, a named hierarchy, cgroup v2 at
    // unified, and another container's view of memory elsewhere (which must not be picked).
    let mountinfo = """
        25 1 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
        26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate
        27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:6 - cgroup cgroup rw,xattr,name=systemd
        30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
        31 25 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,memory
        32 25 0:30 /kubepods /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
        90 88 0:29 /docker/abc /var/lib/other/rootfs/sys/fs/cgroup/memory ro,relatime - cgroup cgroup rw,memory
        """
    let cgroupFile = """
        12:pids:/kubepods/pod1/c1
        9:memory:/cocoon/c1
        4:cpu,cpuacct:/cocoon/c1
        3:net_cls,net_prio:/
        1:name=systemd:/user.slice/session-1.scope
        0::/user.slice/session-1.scope
        """

    @Test func eachLineFindsItsMountUnderTheRoot() {
        let found = CgroupHierarchy.resolve(cgroupFile: cgroupFile, mounts: MountTable.parse(mountinfo), mountRoot: "/sys/fs/cgroup/")
        #expect(found.map(\.controllers) == ["pids", "memory", "cpu,cpuacct", "name=systemd", ""],
                "net_cls,net_prio is not mounted, so it is left out")
        #expect(found.map(\.mountPoint) == ["/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu,cpuacct",
                                            "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"])
        #expect(found[1].directory == "/sys/fs/cgroup/memory/cocoon/c1")
        #expect(found[0].directory == "/sys/fs/cgroup/pids/pod1/c1", "a mount whose root is /kubepods shows the rest below it")
        #expect(found[4].isV2 && found[4].directory == "/sys/fs/cgroup/unified/user.slice/session-1.scope")
        #expect(found[2].mountData == "cpu,cpuacct" && found[3].mountData == "name=systemd")
        #expect(found.filter(CgroupManager.placesContainers(in:)).map(\.controllers) == ["pids", "memory", "cpu,cpuacct", "name=systemd"])
    }

    @Test func aMountThatDoesNotReachTheCgroupHasNoDirectory() {
        let found = CgroupHierarchy.resolve(cgroupFile: "12:pids:/system.slice/x\n", mounts: MountTable.parse(mountinfo),
                                            mountRoot: "/sys/fs/cgroup")
        #expect(found.count == 1 && found[0].directory == nil)
    }

    @Test func aUnifiedHostHasOneHierarchyAtTheRoot() {
        let mounts = MountTable.parse("30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n")
        let found = CgroupHierarchy.resolve(cgroupFile: "0::/cocoon/c1\n", mounts: mounts, mountRoot: "/sys/fs/cgroup")
        #expect(found == [CgroupHierarchy(controllers: "", cgroup: "/cocoon/c1", mountPoint: "/sys/fs/cgroup",
                                          directory: "/sys/fs/cgroup/cocoon/c1")])
    }

    @Test func mountTableFieldsAndEscapes() {
        let entries = MountTable.parse("""
            36 35 98:0 /mnt1 /mnt/with\\040space\\134x rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue
            too short
            37 35 98:0 / /no/separator rw x y z a b c
            """)
        #expect(entries.count == 1)
        #expect(entries.first == MountTableEntry(root: "/mnt1", mountPoint: "/mnt/with space\\x", options: ["rw", "noatime"],
                                                 fileSystemType: "ext3", source: "/dev/root", superOptions: ["rw", "errors=continue"]))
        #expect(MountTable.current().contains { $0.mountPoint == "/" }, "this process's own table parses")
    }
}
