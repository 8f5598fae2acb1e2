"""A loopback Dysmsapi that checks SendSms requests as Aliyun does: the signature is recomputed here (own
encoder, not the client's) from the decoded query and the key's secret; required parameters, Version,
timestamp skew and nonce reuse are checked; errors come back with Aliyun's bodies and HTTP statuses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.gateway.fake_http import Request

HOST_ID = "dysmsapi.aliyuncs.com"
REQUIRED = (
    "AccessKeyId",
    "Action",
    "Format",
    "RegionId",
    "SignatureMethod",
    "SignatureNonce",
    "SignatureVersion",
    "Timestamp",
    "Version",
    "PhoneNumbers",
    "SignName",
    "TemplateCode",
)
UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def pop_encode(s: str) -> str:
    return "".join(chr(b) if b in UNRESERVED else f"%{b:02X}" for b in s.encode())


def server_sign(params: dict[str, str], secret: str) -> tuple[str, str]:
    canon = "&".join(f"{pop_encode(k)}={pop_encode(params[k])}" for k in sorted(params))
    sts = "GET&%2F&" + pop_encode(canon)
    sig = base64.b64encode(hmac.new(f"{secret}&".encode(), sts.encode(), hashlib.sha1).digest()).decode()
    return sig, sts


@dataclass
class Sent:
    phone: str
    sign_name: str
    template_code: str
    params: dict[str, str]
    out_id: str | None


@dataclass
class FakeAliyun:
    keys: dict[str, str]
    sign_names: set[str]
    templates: set[str]
    script: list[str] = field(default_factory=list)  # codes to answer first (e.g. throttling)
    sent: list[Sent] = field(default_factory=list)
    nonces: set[str] = field(default_factory=set)

    def _err(self, status: int, code: str, message: str) -> tuple[int, Any]:
        body = {"Message": message, "RequestId": str(uuid.uuid4()).upper(), "Code": code}
        if status != 200:  # gateway-level errors carry these too
            body |= {"HostId": HOST_ID, "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}"}
        return status, body

    async def handle(self, req: Request) -> tuple[int, Any]:
        pairs = req.query_pairs()
        q = dict(pairs)
        if len(q) != len(pairs):
            return self._err(400, "InvalidParameter", "The parameter is duplicated.")
        sig = q.pop("Signature", None)
        for name in REQUIRED:
            if not q.get(name):
                return self._err(
                    400, "MissingParameter", f"The input parameter \u201c{name}\u201d is missing."
                )
        if q["Version"] != "2017-05-25" or q["Action"] != "SendSms":
            return self._err(400, "InvalidVersion", "Specified parameter Version is not valid.")
        secret = self.keys.get(q["AccessKeyId"])
        if secret is None:
            return self._err(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        expected, sts = server_sign(q, secret)
        if sig != expected:
            return self._err(
                400,
                "SignatureDoesNotMatch",
                f"Specified signature does not match our calculation. server string to sign is:{sts}",
            )
        ts = datetime.strptime(q["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if abs((datetime.now(UTC) - ts).total_seconds()) > 900:
            return self._err(
                400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
            )
        if q["SignatureNonce"] in self.nonces:
            return self._err(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        self.nonces.add(q["SignatureNonce"])
        if self.script:
            code = self.script.pop(0)
            if code.startswith("Throttling"):
                return self._err(400, code, "Request was denied due to user flow control.")
            return self._err(200, code, "触发号码天级流控Permits:10")
        if q["SignName"] not in self.sign_names:
            return self._err(200, "isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
        if q["TemplateCode"] not in self.templates:
            return self._err(200, "isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
        if not re.fullmatch(r"1[3-9]\d{9}", q["PhoneNumbers"]):
            return self._err(200, "isv.MOBILE_NUMBER_ILLEGAL", "手机号码格式错误")
        try:
            params = json.loads(q.get("TemplateParam", "{}"))
        except ValueError:
            return self._err(200, "isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
            return self._err(200, "isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        self.sent.append(Sent(q["PhoneNumbers"], q["SignName"], q["TemplateCode"], params, q.get("OutId")))
        biz = f"{len(self.sent):06d}{uuid.uuid4().int % 10**12:012d}^0"
        return 200, {"Message": "OK", "RequestId": str(uuid.uuid4()).upper(), "BizId": biz, "Code": "OK"}
