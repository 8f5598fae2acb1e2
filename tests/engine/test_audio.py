import numpy as np

from engine import audio


def test_g711_roundtrip_error_bounded() -> None:
    x = (np.sin(np.arange(8000) * 2 * np.pi * 440 / 8000) * 12000).astype(np.int16)
    for enc, dec in ((audio.ulaw_encode, audio.ulaw_decode), (audio.alaw_encode, audio.alaw_decode)):
        y = dec(enc(x))
        assert y.dtype == np.int16 and len(y) == len(x)
        err = np.abs(y.astype(int) - x.astype(int))
        # G.711 is ~13 bits: error well under 3% of full scale everywhere, and SNR > 30 dB
        assert err.max() < 1100
        snr = 10 * np.log10(np.sum(x.astype(float) ** 2) / np.sum((y.astype(float) - x) ** 2))
        assert snr > 30


def test_g711_silence_bytes() -> None:
    z = np.zeros(4, dtype=np.int16)
    assert audio.ulaw_encode(z) == bytes([audio.ULAW_SILENCE]) * 4
    assert audio.alaw_encode(z) == bytes([audio.ALAW_SILENCE]) * 4


def test_g711_known_values() -> None:
    # ITU-T G.711 reference points
    assert audio.ulaw_decode(bytes([0x00]))[0] == -32124
    assert audio.ulaw_decode(bytes([0x80]))[0] == 32124
    assert audio.alaw_decode(bytes([0xD5]))[0] == 8
    assert audio.alaw_decode(bytes([0x2A]))[0] == -32256


def test_frames_and_levels() -> None:
    pcm = np.ones(330, dtype=np.int16) * 1000
    frames = audio.frames_of(pcm)
    assert [len(f) for f in frames] == [160, 160, 160]
    assert frames[-1][10:].sum() == 0
    assert audio.rms_dbfs(audio.silence()) == -120.0
    assert -31 < audio.rms_dbfs(np.ones(160, np.int16) * 1000) < -30


def test_resample_preserves_tone() -> None:
    t = np.arange(16000) / 16000
    x = (np.sin(2 * np.pi * 300 * t) * 10000).astype(np.int16)
    y = audio.resample(x, 16000, 8000)
    assert len(y) == 8000
    spec = np.abs(np.fft.rfft(y.astype(float)))
    assert abs(int(np.argmax(spec)) - 300) <= 1
