"""An OpenVZ config becomes the parameters of a Proxmox restore, key by key
(adapters/proxmox/from_openvz.py)."""

from __future__ import annotations

import pytest

from adapters.openvz.inventory import parse_conf
from adapters.proxmox.from_openvz import RestoreTarget, restore_params

CONF = parse_conf('''
OSTEMPLATE="debian-7.0-x86_64-minimal"
PHYSPAGES="0:262144"
SWAPPAGES="0:131072"
DISKSPACE="10485760:11534336"
CPUS="2"
CPULIMIT="150"
HOSTNAME="www.example.net"
NAMESERVER="192.0.2.53 192.0.2.54"
SEARCHDOMAIN="example.net"
ONBOOT="yes"
IP_ADDRESS="10.0.1.5"
''')


def test_every_key_is_converted():
    target = RestoreTarget(vmid=205, archive="backup:backup/vzdump-openvz-101.tar", storage="local-zfs",
                           ips=("10.0.2.10/24",), gateway="10.0.2.1")
    assert restore_params(CONF, target) == {
        "vmid": 205, "ostemplate": "backup:backup/vzdump-openvz-101.tar", "restore": 1,
        "storage": "local-zfs", "unprivileged": 0, "ostype": "debian", "onboot": 1,
        "memory": 1024, "swap": 512, "rootfs": "local-zfs:11", "cores": 2, "cpulimit": "1.5",
        "hostname": "www.example.net", "nameserver": "192.0.2.53 192.0.2.54",
        "searchdomain": "example.net",
        "net0": "name=eth0,bridge=vmbr0,ip=10.0.2.10/24,gw=10.0.2.1"}


def test_unset_limits_are_left_to_proxmox_and_every_address_gets_an_interface():
    conf = parse_conf('OSTEMPLATE="slackware-14"\nIP_ADDRESS="10.0.1.5 2001:db8::5"\n')
    params = restore_params(conf, RestoreTarget(vmid=9, archive="a", storage="s",
                                                ips=("10.0.2.10/24", "2001:db8:1::5/64"),
                                                gateway="10.0.2.1", bridge="vmbr1"))
    assert params["ostype"] == "unmanaged" and params["onboot"] == 0
    assert not {"memory", "swap", "rootfs", "cores", "cpulimit", "hostname"} & set(params)
    assert params["net0"] == "name=eth0,bridge=vmbr1,ip=10.0.2.10/24,gw=10.0.2.1"
    assert params["net1"] == "name=eth1,bridge=vmbr1,ip6=2001:db8:1::5/64"


def test_a_venet_address_without_prefix_is_refused():
    with pytest.raises(ValueError, match="prefix length"):
        restore_params(CONF, RestoreTarget(vmid=9, archive="a", storage="s", ips=("10.0.2.10",)))
