"""RTP media: packets, G.711 codecs, jitter buffer, RFC 4733 DTMF, the shared 20 ms ticker, sessions."""

from .session import RtpSession
from .ticker import Histogram, MediaTicker

__all__ = ["Histogram", "MediaTicker", "RtpSession"]
