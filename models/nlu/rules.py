"""rules-v1: a keyword/regex intent + emotion classifier for zh and en replies.

The first engine.ports.Classifier. A fine-tuned encoder replaces it behind the same port later; this one
stays useful as the safety layer, because do-not-call requests and complaints must never be missed.

Decision order (first tier that matches wins):
  1. stop_calling, complaint                       (must never be missed)
  2. dialplan-specific intents (context.extra_intents keywords)
  3. human_agent, wrong_person, not_interested, already_done, busy_callback, ask_price, ask_identity,
     ask_detail, repeat, thinking                  (first in this list wins)
  4. affirm / deny with negation handling: 不是不需要 / 也不是不行 -> affirm, 不太需要 -> not_interested,
     不好 / 不行 -> deny, 不好意思 / 不错 / 没问题 are not denials, A-not-A questions (好不好) are neither
  5. other
Emotion: angry (骚扰, 滚, 烦死了, 别再打 ...), negative, positive, neutral.

Matching is on a normalised string: lower case, full-width folded, a few traditional characters mapped to
simplified (Whisper sometimes answers in traditional), spaces removed between Chinese characters. Patterns
allow common ASR homophones (再/在, 恩/嗯, 须/需).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.intents import Emotion, Intent
from engine.ports import ClassifyContext, Prediction
from models.nlu.phonetic import sounds_like_complaint, sounds_like_stop_calling

_T2S = str.maketrans(
    "別騷擾價錢轉問誰裡說沒聽對訴開會興經報慮錯話給電這個們麼為時間員實煩滾費點幾買辦過嗎謝請樣還兒應該讓聯係繫來與後須節課試號碼類嗯",
    "别骚扰价钱转问谁里说没听对诉开会兴经报虑错话给电这个们么为时间员实烦滚费点几买办过吗谢请样还儿应该让联系系来与后须节课试号码类嗯",
)
_CJK = re.compile(r"[\u4e00-\u9fff]")
_PUNCT = re.compile(r"[\s，。！？、；：,.!?;:…~～\"“”()（）\-—]+")


def normalize_reply(text: str) -> str:
    """Lower-case, fold full-width, map traditional -> simplified for keywords, collapse punctuation."""
    t = text.translate(_T2S).lower()
    t = "".join(chr(ord(c) - 0xFEE0) if 0xFF01 <= ord(c) <= 0xFF5E else c for c in t)
    t = (
        re.sub(r"['’‘]", "", t).replace("恩", "嗯").replace("须要", "需要")
    )  # don't -> dont: patterns are written without apostrophes
    t = _PUNCT.sub(" ", t).strip()
    # drop spaces between CJK characters (ASR output is often space-separated)
    return re.sub(r"(?<=[\u4e00-\u9fff]) (?=[\u4e00-\u9fff])", "", t)


def _zh(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(patterns))


def _en(*patterns: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(patterns) + r")\b")


@dataclass(frozen=True)
class Rule:
    intent: str
    zh: re.Pattern[str]
    en: re.Pattern[str]


_NO_T = r"(?:do not|dont|does not|doesnt)"

PRIORITY_RULES: tuple[Rule, ...] = (
    Rule(
        Intent.STOP_CALLING,
        _zh(
            r"别[再在]?打",
            r"不要[再在]?打",
            r"[再在]打.{0,4}(?:投诉|报警)",
            r"[再在]打(?:一[次下个]|过来)?试试",
            r"(?:别|不要)[再在][达搭]",  # ASR homophones of 打 (别再达了)
            r"(?:别|不要)[再在]?(?:收饶|扫扰|骚绕)",  # ... and of 骚扰
            r"别[再在]?(?:给我)?打(?:电话|过来)?",
            r"不要[再在]?(?:给我)?打",
            r"以后(?:都)?(?:别|不要)",
            r"(?:别|不要)[再在]?(?:联系|骚扰)",
            r"把我(?:的号码?|的电话)?(?:删|拉黑|移除)",
            r"(?:删|深|移除)(?:掉)?我的(?:号码|电话)",
            r"拉黑",
            r"黑名单",
            r"退订",
            r"免打扰",
            r"(?:不想|不要|不愿意)再接到",
            r"把我.{0,10}(?:删|去掉|移除)",
            r"删除我",
            r"(?:别|不要|不用)(?:再)?(?:老|一天到晚|总)?打(?:电话|来)",
            r"不用再打",
            r"少给我打",
            r"(?:别|不要)再来烦",
            r"(?:别|不要)再拨",
            r"禁止再打",
        ),
        _en(
            r"stop calling",
            rf"{_NO_T} (?:ever )?call",
            r"never call",
            r"take me off",
            r"remove (?:me|my number)",
            r"unsubscribe",
            rf"{_NO_T} contact",
            r"stop (?:contacting|bothering|harassing)",
            r"do not call list",
            r"lose my number",
            # not "come": "don't come again" (a visit, or ASR's guess at "call") is no do-not-call evidence
            rf"{_NO_T} (?:ever )?(?:call|ring|phone|contact|bother|bug) (?:me |us |here |this number )?"
            r"(?:again|anymore|any more)",
            r"quit (?:calling|phoning|ringing)",
            r"stop (?:phoning|ringing|texting)",
            r"(?:delete|erase) my (?:number|details)",
            r"take my (?:number|name) off",
            r"no more calls",
            r"opt me out",
            r"(?:told|asked) you (?:not to|to stop|never to) call",
            r"if you call (?:me |here )?again",
        ),
    ),
    Rule(
        Intent.COMPLAINT,
        _zh(r"投诉", r"骚扰", r"12315", r"举报", r"报警", r"工信部", r"消协", r"诈骗", r"骗子"),
        _en(
            r"complain\w*", r"report (?:you|this)", r"harass\w*", r"scam\w*", r"fraud", r"sue you", r"lawyer"
        ),
    ),
)

TOPIC_RULES: tuple[Rule, ...] = (
    Rule(
        Intent.HUMAN_AGENT,
        _zh(
            r"转人工",
            r"人工(?:服务|客服)?",
            r"真人",
            r"(?:找|叫|让)(?:你们)?(?:客服|经理|领导|负责人)",
            r"是不是机器人",
            r"你是机器人",
            r"(?:跟|和)人(?:说|讲)",
        ),
        _en(
            r"real person",
            r"human",
            r"(?:an |a live )?agent",
            r"operator",
            r"representative",
            r"speak (?:to|with) (?:someone|a person|somebody)",
            r"are you a (?:robot|bot|machine)",
        ),
    ),
    Rule(
        Intent.WRONG_PERSON,
        _zh(
            r"打错了?",
            r"(?:我)?不是(?:他|她|本人)",
            r"^不是我",
            r"找错人",
            r"没有这个人",
            r"不认识(?:他|她|这个人)",
            r"号码.{0,2}换了?人",
            r"我不是你(?:说|找)的",
        ),
        _en(
            r"wrong (?:number|person)",
            r"not me",
            r"no one (?:here )?by that name",
            r"nobody by that name",
            r"(?:does not|doesnt) live here",
            r"you have the wrong",
            r"never heard of (?:him|her)",
        ),
    ),
    Rule(
        Intent.NOT_INTERESTED,
        _zh(
            r"不需要",
            r"不太需要",
            r"不怎么需要",
            r"(?:暂时|目前|现在)?(?:还)?不(?:太)?需要",
            r"不感兴趣",
            r"没(?:什么|啥)?兴趣",
            r"不用了",
            r"^不用",
            r"不想(?:要|了解|听|买|报|学)",
            r"不要了",
            r"没(?:有)?需要",
            r"不考虑",
            r"算了吧?",
            r"用不着",
            r"不买",
            r"没(?:这个)?打算",
        ),
        _en(
            r"not interested",
            r"no thanks?",
            r"no thank you",
            rf"{_NO_T} need",
            rf"{_NO_T} want",
            r"not (?:for me|looking)",
            r"not right now thanks",
        ),
    ),
    Rule(
        Intent.ALREADY_DONE,
        _zh(
            r"已经(?:报|买|有|办|参加|交|上|学|在|用|弄|处理|完成|好了|了)",
            r"报过了?",
            r"买过了?",
            r"办过了?",
            r"上过了?",
            r"有了",
            r"早就",
        ),
        _en(r"already", r"(?:have|has) one", r"signed up", r"done that"),
    ),
    Rule(
        Intent.BUSY_CALLBACK,
        _zh(
            r"[在再]开会",
            r"[在再]忙",
            r"很忙",
            r"正忙",
            r"没空",
            r"没时间",
            r"不方便",
            r"晚[点些一](?:再|在)?(?:打|说|联系)",
            r"回头[再在]?(?:打|说|联系)",
            r"[再在]?(?:打|联系)过来",
            r"等(?:一)?下[再在]?(?:打|说)",
            r"[在再]开车",
            r"[在再]上班",
            r"[在再]外面",
            r"[在再]吃饭",
            r"下午[再在]",
            r"明天[再在]",
            r"改天",
        ),
        _en(
            r"busy",
            r"in a meeting",
            r"call (?:me )?(?:back )?later",
            r"call me back",
            r"not a good time",
            r"(?:im|i am) driving",
            r"cant talk",
            r"can not talk",
            r"another time",
            r"later please",
        ),
    ),
    Rule(
        Intent.ASK_PRICE,
        _zh(
            r"多少钱",
            r"价格",
            r"价钱",
            r"收费",
            r"费用",
            r"几(?:块|百|千)钱?",
            r"贵不贵",
            r"(?:太|好|挺)贵",
            r"便宜",
            r"怎么(?:收|算)",
            r"免费吗",
            r"要钱",
            r"花钱",
            r"学费",
            r"报价",
            r"优惠",
        ),
        _en(r"how much", r"price", r"cost\w*", r"fee", r"charge", r"expensive", r"cheap\w*", r"is it free"),
    ),
    Rule(
        Intent.ASK_IDENTITY,
        _zh(
            r"你是谁",
            r"你哪位",
            r"哪位",
            r"你是哪",
            r"哪里的",
            r"哪个(?:公司|机构|单位)",
            r"什么(?:公司|机构|单位)",
            r"怎么(?:知道|有|拿到)我的?(?:号码|电话)",
            r"你们是(?:干|做)什么的",
            r"你是干嘛的",
        ),
        _en(
            r"who is this",
            r"who are you",
            r"whos calling",
            r"who is calling",
            r"where are you calling from",
            r"what company",
            r"how did you get my number",
        ),
    ),
    Rule(
        Intent.ASK_DETAIL,
        _zh(
            r"什么(?:课|活动|内容|产品|东西|意思)",
            r"具体",
            r"详细",
            r"介绍一下",
            r"怎么(?:样|报名|参加|上课|弄)",
            r"在哪(?:里|儿)?",
            r"地址",
            r"什么时候",
            r"几点",
            r"多久",
            r"适合",
            r"有什么",
            r"哪些",
        ),
        _en(
            r"tell me more",
            r"details?",
            r"what is it",
            r"how does (?:it|this) work",
            r"where is",
            r"when is",
            r"what kind",
            r"more information",
        ),
    ),
    Rule(
        Intent.REPEAT,
        _zh(
            r"[再在]说一[遍次]",
            r"没听(?:清|到|见|懂)",
            r"听不(?:清|到|见|懂)",
            r"什么\?*$",
            r"^啊\?*$",
            r"你说(?:什么|啥)",
            r"重复一下",
            r"大声一?点",
            r"信号不好",
        ),
        _en(
            r"pardon",
            r"repeat",
            r"say (?:that|it) again",
            r"didnt catch",
            r"what did you say",
            r"come again",
            r"cant hear",
            r"^what$",
            r"^sorry$",
        ),
    ),
    Rule(
        Intent.THINKING,
        _zh(
            r"考虑(?:一下|下)?",
            r"想想",
            r"想一想",
            r"再看看",
            r"商量(?:一下)?",
            r"问问(?:家里|老婆|老公|孩子)",
            r"还没想好",
            r"不确定",
            r"看情况",
            r"到时候再说",
            r"再说吧",
        ),
        _en(
            r"let me think",
            r"think about it",
            r"consider",
            r"not sure",
            r"talk to my (?:wife|husband|family)",
        ),
    ),
)

# --- affirm / deny --------------------------------------------------------------------------------

_NEUTRALIZE_ZH = re.compile(
    r"不好意思|不客气|不用客气|没关系|不要紧|对不起|不在乎|[你您]好|喂|哈喽|你们好|大家好"
)
_POSITIVE_NEG_ZH = re.compile(r"不错|没问题|没毛病")
_A_NOT_A = re.compile(r"(好|行|可以|对|是|要|能|会|有)(?:不|没)\1?")
_DOUBLE_NEG = re.compile(r"(?:不是|也不是|并不是|没说|又不是|倒不是)(?:不|没)")
_NEG_AFFIRM = re.compile(r"(?:不|没|别)(?:太|怎么|是很|很)?(?:好|行|可以|对|是|要|用|想|愿意|同意|方便|合适)")
_AFFIRM_ZH = re.compile(
    r"好的?|可以|行|嗯|对|是的|是啊|是$|^是|没问题|有兴趣|感兴趣|要的|需要|想了解|愿意|同意|当然|OK|ok|欧克|来吧|挺好|不错|就这样|知道了|明白"
)
_DENY_ZH = re.compile(r"^不$|^没$|^没有|不是|^不[啊呀了哦]|不行|没有|^否|拒绝|不要")
_AFFIRM_EN = _en(
    r"yes",
    r"yeah",
    r"yep",
    r"yup",
    r"sure",
    r"ok",
    r"okay",
    r"alright",
    r"all right",
    r"of course",
    r"certainly",
    r"absolutely",
    r"sounds good",
    r"interested",
    r"great",
    r"fine",
    r"correct",
    r"right",
    r"please do",
    r"go ahead",
    r"i do",
    r"why not",
    r"no problem",
    r"not bad",
    r"definitely",
)
_DENY_EN = _en(r"no", r"nope", r"nah", r"not really", r"negative", r"i dont", r"never", r"not at all")
_NEUTRALIZE_EN = re.compile(r"\b(?:no problem|not bad|no worries)\b")

# --- emotion --------------------------------------------------------------------------------------

_ANGRY = (
    _zh(
        r"骚扰",
        r"滚",
        r"烦死",
        r"别[再在]打",
        r"不要[再在]打",
        r"神经病",
        r"有病",
        r"妈的",
        r"他妈",
        r"傻[逼b]",
        r"sb",
        r"烦不烦",
        r"去死",
        r"再打.{0,4}(?:投诉|报警)",
        r"有完没完",
        r"够了",
        r"闭嘴",
        r"垃圾",
    ),
    _en(
        r"fuck\w*",
        r"shit",
        r"damn",
        r"stop calling",
        r"harass\w*",
        r"leave me alone",
        r"sick of",
        r"piss off",
        r"scam\w*",
        r"shut up",
        r"idiot",
    ),
)
_NEGATIVE = (
    _zh(
        r"烦",
        r"讨厌",
        r"失望",
        r"无语",
        r"不满",
        r"差劲",
        r"太差",
        r"坑",
        r"算了",
        r"不需要",
        r"不感兴趣",
        r"没兴趣",
        r"生气",
    ),
    _en(r"annoy\w*", r"terrible", r"awful", r"hate", r"bad", r"not interested", r"disappoint\w*", r"upset"),
)
_POSITIVE = (
    _zh(
        r"太好了",
        r"谢谢",
        r"感谢",
        r"不错",
        r"挺好",
        r"很好",
        r"好啊",
        r"棒",
        r"有兴趣",
        r"感兴趣",
        r"开心",
        r"期待",
        r"满意",
    ),
    _en(
        r"great",
        r"thanks?",
        r"thank you",
        r"wonderful",
        r"awesome",
        r"love",
        r"good",
        r"excellent",
        r"perfect",
        r"interested",
    ),
)


def detect_language(text: str) -> str:
    return "zh" if _CJK.search(text) else "en"


class RulesClassifier:
    """engine.ports.Classifier, name "rules-v1". Pure and fast (tens of µs per reply): runs inline."""

    name = "rules-v1"

    def classify_one(self, text: str, context: ClassifyContext | None = None) -> Prediction:
        ctx = context or ClassifyContext()
        t = normalize_reply(text)
        lang = ctx.language[:2] if ctx.language else detect_language(t)
        emotion, emotion_conf = self.emotion(t, lang)
        if not t:
            return Prediction(
                intent=Intent.OTHER,
                confidence=0.3,
                emotion=emotion,
                emotion_confidence=emotion_conf,
                source=self.name,
            )
        intent, conf = self._intent(t, lang, ctx)
        return Prediction(
            intent=intent, confidence=conf, emotion=emotion, emotion_confidence=emotion_conf, source=self.name
        )

    async def classify(
        self, texts: Sequence[str], context: ClassifyContext | None = None
    ) -> list[Prediction]:
        return [self.classify_one(t, context) for t in texts]

    # --- intent ----------------------------------------------------------------------------------------

    def _intent(self, t: str, lang: str, ctx: ClassifyContext) -> tuple[str, float]:
        for rule in PRIORITY_RULES:
            if (rule.zh if lang == "zh" else rule.en).search(t):
                if rule.intent == Intent.COMPLAINT and lang == "zh" and sounds_like_stop_calling(t):
                    # 不要再骚扰我了 with 不要 garbled (哺摇再骚扰我了) is still a do-not-call request
                    return Intent.STOP_CALLING, 0.9
                return rule.intent, 0.95
        if lang == "zh":  # the same phrases heard with the wrong characters (ASR homophones)
            if sounds_like_stop_calling(t):
                return Intent.STOP_CALLING, 0.9
            if sounds_like_complaint(t):
                return Intent.COMPLAINT, 0.9
        for name, keywords in ctx.extra_intents.items():
            if any(k and normalize_reply(k) in t for k in keywords):
                return name, 0.85
        affirm_deny = self._affirm_deny(t, lang)
        if (
            affirm_deny is not None
            and affirm_deny[0] == Intent.AFFIRM
            and affirm_deny[1] >= 0.6
            and self._double_neg(t)
        ):
            return affirm_deny
        for rule in TOPIC_RULES:
            if (rule.zh if lang == "zh" else rule.en).search(t):
                return rule.intent, 0.85
        if affirm_deny is not None:
            intent, conf = affirm_deny
            if ctx.expects == "yes_no":
                conf = min(0.95, conf + 0.05)
            elif ctx.expects == "open" and conf < 0.9:
                conf -= 0.1
            return intent, round(conf, 2)
        return Intent.OTHER, 0.5

    @staticmethod
    def _double_neg(t: str) -> bool:
        return bool(_DOUBLE_NEG.search(t))

    def _affirm_deny(self, t: str, lang: str) -> tuple[str, float] | None:
        short = len(t) <= 4 if lang == "zh" else len(t.split()) <= 3
        if lang == "zh":
            if _DOUBLE_NEG.search(t):
                return Intent.AFFIRM, 0.6
            core = _A_NOT_A.sub(" ", _POSITIVE_NEG_ZH.sub("好", _NEUTRALIZE_ZH.sub(" ", t))).strip()
            if _NEG_AFFIRM.search(core) or _DENY_ZH.search(core):
                return Intent.DENY, 0.9 if short else 0.7
            if _AFFIRM_ZH.search(core):
                return Intent.AFFIRM, 0.9 if short else 0.75
            return None
        core = _NEUTRALIZE_EN.sub(" ", t)
        if re.search(r"\bnot interested\b", core):
            return Intent.DENY, 0.8
        if _DENY_EN.search(core):
            return Intent.DENY, 0.9 if short else 0.7
        if _AFFIRM_EN.search(t):
            return Intent.AFFIRM, 0.9 if short else 0.75
        return None

    # --- emotion ---------------------------------------------------------------------------------------

    @staticmethod
    def emotion(t: str, lang: str) -> tuple[str, float]:
        i = 0 if lang == "zh" else 1
        if _ANGRY[i].search(t):
            return Emotion.ANGRY, 0.9
        if _NEGATIVE[i].search(t):
            return Emotion.NEGATIVE, 0.7
        if _POSITIVE[i].search(t):
            return Emotion.POSITIVE, 0.7
        return Emotion.NEUTRAL, 0.6
