"""Character classes used by encoding detection and line joining.

``COMMON_HANZI`` holds roughly the 1,000 most frequent Chinese characters in simplified form
plus the traditional forms of the common ones that differ. Encoding detection uses it to tell
a correct decoding (mostly common characters) from mojibake (rare characters, kana, private
use); it does not need to be exact, only to separate "plausible Chinese" from noise.
"""

from __future__ import annotations

import re

_SIMPLIFIED = (
    "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年"
    "过发后作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心"
    "她本前开但因只从想实日军者意无力它与长把机十民第公此已工使情明性知全三又关点正业外将两高间"
    "由问很最重并物手应战向头文体政美相见被利什二等产或新己制身果加西斯月话合回特代内信表化老给"
    "世位次度门任常先海通教儿原东声提立及比员解水名真论处走义各入几口认条平系气题活尔更别打女变"
    "四神总何电数安少报才结反受目太量再感建务做接必场件计管期市直德资命山金指克许统区保至队形社"
    "便空决治展马科司五基眼书非则听白却界达光放强即像难且权思王象完设式色路记南品住告类求据程北"
    "边死张该交规万取拉格望觉术领共确传师观清今切院让识候带导争运笑飞风步改收根干造言联持组每济"
    "车亲极林服快办议往元英士证近失转夫令准布始怎呢存未远叫台单影具罗字爱击流备兵连调深商算质团"
    "集百需价花党华城石级整府离况亚请技际约示复病息究线似官火断精满支视消越器容照须九增研写称企"
    "八功吗包片史委乎查轻易早曾除农找装广显吧阿李标谈吃图念六引历首医局突专费号尽另周较注语仅考"
    "落青随选列武红响虽推势参希古众构房半节土投某案黑维革划敌致陈律足态护七兴派孩验责营星够章音"
    "跟志底站严巴例防族供效续施留讲型料终答紧黄绝奇察母京段依批群项故按河米围江织害斗双境客纪采"
    "举杀攻父苏密低朝友诉止细愿千值仍男钱破网热助倒育属坐帝限船脸职速刻乐否刚威毛状率甚独球般普"
    "怕弹校苦创假久错承印晚兰试股拿脑预谁益阳若哪微尼继送急血惊伤素药适波夜省初喜卫源食险待述陆"
    "习置居劳财环排福纳欢雷警获模充负云停木游龙树疑层冷洲冲射略范竟句室异激汉村哈策演简卡罪判担"
    "州静退既衣您宗积余痛检差富灵协角占配征修皮挥胜降阶审沉坚善妈刘读啊超免压银买皇养伊怀执副乱"
    "抗犯追帮宣佛岁航优怪香著田铁控税左右份穿艺背阵草脚概恶块顿敢守酒岛托央户烈洋哥索胡款靠评版"
    "宝座释景顾弟登货互付伯慢欧换闻危忙核暗姐介坏讨丽良序升监临亮露永呼味野架域沙掉括舰鱼杂误湾"
    "吉减编楚肯测败屋跑梦散温困剑渐封救贵枪缺楼县尚毫移娘朋画班智亦耳恩短掌恐遗固席松秘谢鲁遇康"
    "虑幸均销钟诗藏赶剧票损忽巨炮旧端探湖录叶春乡附吸予礼港雨呀板庭妇归睛饭额含顺输摇招婚脱补谓"
    "督毒油疗旅泽材灭逐莫笔亡鲜词圣择寻厂睡博勒烟授诺伦岸奥唐卖俄炸载洛健堂旁宫喝借君禁阴园谋宋"
    "避抓荣姑孙逃牙束跳顶玉镇雪午练迫爷篇肉嘴馆遍凡础洞卷坦牛宁纸诸训私庄祖丝翻暴森塔默握戏隐熟"
    "骨访弱蒙歌店鬼软典欲萨伙遭盘爸扩盖弄雄稳忘亿刺拥徒姆杨齐赛趣曲刀床迎冰虚玩析窗醒妻透购替塞"
    "努休虎扬途侵刑绿兄迅套贸毕唯谷轮库迹尤竞街促延震弃甲伟麻川申缓潜闪售灯针哲络抵朱埃抱鼓植纯"
    "夏忍页杰筑折郑贝尊吴秀混臣雅振染盛怒舞圆搞狂措姓残秋培迷诚宽宇猛摆梅毁伸摩盟末乃悲拍丁赵硬"
    "曰矣焉哉乎耶兮尔吾汝曹孔孟操备羽飞亮权瑜僧妖怪猴戒沙唐宝玉黛钗凤贾府琏珍蓉蔷芹"
)

_TRADITIONAL = (
    "這們個來為時說國會後對學經過還發動與種實現點關頭長問開題從員體當進樣話邊讓見給將電業無線聲"
    "氣應產總間麼裡術領導爭運飛風聽買賣東車馬鳥魚龍門書寫語讀記認識論議設計師傳萬歲區華係統條習"
    "號歡樂聖親愛誰結紅綠藍雲雖隨義禮麗鄉鐵銀錢陽陰陳劉張趙楊吳孫鄭馮蕭龐裏兒幾機緊權變處齊錯該"
    "隊帶歸戰軍觀顯樓兩嚴雙鬥難隻職質視極財務場報達據準確劃調廣連鐘錄藝濟廠農陸圖團狀羅聯態網絡"
    "滿資實踐證離遠嗎類熱貨標轉輕輸較黨講韓趕選醫藥漢灣嶺島斷歷繼續頁順須顧飯館駕驗髮鬧黃齡龜"
    "興舉擊殺靈陣劍紀約級組織終給絕統經綠線練縣總爺爾獨獲環現瑪產畫異當發盡監盤眾睜礙禮禍稱積穩"
    "窮竊筆範節簡糧純紙紛細紹終統絲經綱網緣編緩縮繁繩續罵罷義習聞聯聰肅腦腳興舊莊萬葉蘇蟲衛補裝"
    "複見規視覺親觀訂計討訓記許詞試詩話該詳誠語誤說請諸謀講謝證識譯護讀變讓貝負財貧責貴買費賀資"
    "賞賢賣質賴趙趕跡踐車軟載輕輪輩輯辦農迴逕這連進遊運過達違遙適遲遷選遺邊郵鄉醜釋針鈴銀鋼錄錢"
    "錯鍵鎮長門閃閉開閒間閣閱關陣陰陸陽隊階際隨險隱雜雞離難雲電霧靈靜響項順須預領頭題額顏願類顧"
    "風飛飯飲餘館馬駐騎驗驚體髮鬥鬧魚鮮鳥鳳鳴鴻麥黃點黨齊齒龍備"
)

COMMON_HANZI: frozenset[str] = frozenset(_SIMPLIFIED + _TRADITIONAL)

# East Asian wide/full-width blocks: CJK symbols and punctuation, kana, Hangul, ideographs
# (incl. extensions and compatibility forms), full-width forms. Counted as 2 display columns.
_WIDE = (
    "\u1100-\u115f\u2e80-\u303e\u3041-\u33ff\u3400-\u4dbf\u4e00-\u9fff\ua000-\ua4cf"
    "\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6\U00020000-\U0003fffd"
)
WIDE_CHAR_RE = re.compile(f"[{_WIDE}]")
_IDEOGRAPH_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003fffd]")


def is_wide(ch: str) -> bool:
    """True for a character that occupies two columns in CJK text (hanzi, CJK punctuation...)."""
    return WIDE_CHAR_RE.match(ch) is not None


def is_ideograph(ch: str) -> bool:
    """True for a CJK unified or compatibility ideograph."""
    return _IDEOGRAPH_RE.match(ch) is not None


def display_width(s: str) -> int:
    """Columns ``s`` takes in a monospaced CJK layout (wide characters count as two)."""
    return len(s) + len(WIDE_CHAR_RE.findall(s))
