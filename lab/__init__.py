"""The lab: what the tests and the benchmarks both drive a running stack with. The SIPp
launcher (sipp.py), RTP probes (rtp.py), the loopback roles beside the proxy (agents.py) and
the call building blocks over them (calls.py). Above twinctl and rtpctl, below tests and bench;
it imports neither of those two."""
