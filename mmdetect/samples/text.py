# Over 300 lines on purpose: a table of word lists and the templates that draw on them (a split scatters one cue).
"""Japanese listing text for the synthetic sample snapshots: vocabulary and templates.

All brands, games, artists and gift-card names are fictional. Each violation class has several
kinds of cue (wording varies); `*_NEW` pools hold the slang of the drift month 2026-10 and never
occur earlier (`DRIFT_WORDS`). Hard negatives share surface words with violations but are clean.
Every function draws only from the `random.Random` it is given.
"""

from __future__ import annotations

import random


def _w(words: str) -> list[str]:
    return words.split()


def _pairs(words: str) -> list[tuple[str, str]]:
    """'item:category ...' -> [(item, category), ...]"""
    return [tuple(w.split(":")) for w in words.split()]  # type: ignore[misc]


CATEGORIES = ("fashion", "sneakers", "bags", "electronics", "games", "books", "cosmetics",
              "tickets", "toys", "handmade")  # fmt: skip
_B = {
    "fashion": _w("ルミエール COCOLUNE ノースライン AZURE グレイスリー ハニービー MOKUREN"),
    "sneakers": _w("エアストライド RUNWAVE スカイステップ フットリンク ZEPHYR ノヴァラン"),
    "electronics": _w("Pixona ソニカ KAIDEN Lumio テクノア"),
    "cosmetics": _w("ハナノハ Lunae ミルキーベール SHIROTAE アクアリエ"),
    "toys": _w("トイランド ブロッキー もこもこ堂 ミニモータース"),
}
LUX = _w("ヴァレンティオ メゾンルージュ シャンテール ルヴィエ ボルディーニ エルメーヌ")
GAMES_OLD = ["モンスタークエスト", "スターレジェンズ", "剣と魔法のサーガ", "ファンタジーアリーナ",
             "ドラゴンナイツ", "ぷにぷにパズル", "ギャラクシーレース"]  # fmt: skip
GAMES_NEW = ["ステラリンク", "幻想戦記ルミナス", "ネオアーク・クロニクル", "アストラルブレイド"]
ARTISTS = ["SORAIRO", "ミッドナイトキャンディ", "青空ラジオ", "KAGEROU", "はるかぜ少女団"]
COLORS = _w(
    "ブラック ホワイト ネイビー ベージュ グレー ピンク レッド ブルー グリーン ブラウン カーキ"
)
SIZES = ["S", "M", "L", "XL", "フリーサイズ"]
# item, min and max price in yen
ITEMS: dict[str, list[tuple[str, int, int]]] = {
    "fashion": [("Tシャツ", 500, 3000), ("ニット セーター", 1000, 5000), ("ワンピース", 1500, 8000),
                ("デニムパンツ", 1000, 6000), ("トレンチコート", 3000, 15000), ("パーカー", 1000, 5000),
                ("カーディガン", 800, 4000), ("ロングスカート", 1000, 5000)],
    "sneakers": [("スニーカー", 2000, 12000), ("ランニングシューズ", 2500, 10000),
                 ("ハイカット スニーカー", 3000, 14000), ("スリッポン", 1500, 6000)],
    "bags": [("ショルダーバッグ", 1500, 9000), ("トートバッグ", 1000, 6000), ("リュック", 2000, 9000),
             ("ハンドバッグ", 2000, 12000), ("長財布", 1500, 7000), ("ミニ財布", 1000, 5000)],
    "electronics": [("ワイヤレスイヤホン", 2000, 12000), ("スマートフォン 64GB", 15000, 45000),
                    ("タブレット 10インチ", 12000, 38000), ("モバイルバッテリー", 1000, 3500),
                    ("デジタルカメラ", 8000, 40000), ("Bluetooth スピーカー", 1500, 8000)],
    "games": [("Switch ソフト {game}", 2000, 5500), ("PS5 ソフト {game}", 2500, 6000),
              ("ゲーム機本体 Switch", 18000, 32000), ("コントローラー", 2000, 6000)],
    "books": [("漫画 全巻セット", 2000, 9000), ("小説 文庫本 5冊", 500, 2000), ("参考書 英語", 500, 2500),
              ("絵本 まとめ", 800, 3000), ("料理本", 400, 1500)],
    "cosmetics": [("化粧水 200ml", 1000, 4500), ("美容液", 1500, 7000), ("リップ", 500, 2500),
                  ("アイシャドウ パレット", 1000, 5000), ("ファンデーション", 1000, 4500)],
    "tickets": [("{artist} ライブチケット 1枚", 5000, 9800), ("テーマパーク 1日券", 6000, 8800),
                ("映画 前売り券 2枚", 2000, 3400), ("美術館 招待券", 800, 2000)],
    "toys": [("ぬいぐるみ くま", 800, 3500), ("ブロック 基本セット", 1500, 6000), ("ミニカー 10台", 1000, 4000),
             ("フィギュア", 1500, 9000), ("知育玩具 木製", 1000, 4500)],
    "handmade": [("ピアス ハンドメイド", 500, 2500), ("がま口 ポーチ", 800, 3000), ("レジン アクセサリー", 500, 2000),
                 ("編みぐるみ", 1000, 3500), ("陶器 マグカップ", 1200, 4000)],
}  # fmt: skip
TAGS = [
    "【新品未使用】",
    "【美品】",
    "【送料無料】",
    "【匿名配送】",
    "【即日発送】",
    "【値下げ】",
    "★",
    "",
    "",
    "",
]
SUFFIX = ["送料無料", "匿名配送", "美品", "即購入OK", "値下げしました", "", "", ""]
OPEN = ["ご覧いただきありがとうございます。", "プロフィールをご一読ください。", "数ある商品の中からご覧いただきありがとうございます。", ""]  # fmt: skip
COND = ["新品未使用です。", "数回使用しましたが美品です。", "目立った傷や汚れはありません。",
        "使用感がありますが、まだまだお使いいただけます。", "小さな傷がありますが使用に問題ありません。"]  # fmt: skip
REASON = ["引っ越しのため出品します。", "サイズが合わなかったため出品します。", "断捨離中です。",
          "使わなくなったので出品します。", "いただき物ですが使わないため出品します。"]  # fmt: skip
SHIP = ["送料無料で発送します。", "匿名配送でお送りします。", "2〜3日以内に発送します。", "ネコポスで発送予定です。",
        "丁寧に梱包して発送します。"]  # fmt: skip
CLOSE = ["即購入OKです。", "ノークレームノーリターンでお願いします。", "値下げ交渉はご遠慮ください。",
         "気になる点はコメントください。", "ペット・喫煙者はいません。", "お値下げ相談可能です。"]  # fmt: skip
DETAIL = {
    "electronics": ["動作確認済みです。", "充電器付きです。", "初期化済みです。"],
    "games": ["動作確認済みです。", "ケース・説明書付きです。"], "books": ["書き込みはありません。", "日焼けが少しあります。"],
    "cosmetics": ["使用期限内です。", "一度だけ試しました。"], "tickets": ["日時は画像をご確認ください。", "定価でお譲りします。"],
    "toys": ["箱付きです。", "パーツの欠品はありません。"], "handmade": ["ハンドメイド品のためご理解ください。", "一点物です。"],
}  # fmt: skip

# ---- violations: per class, the categories it shows up in, title templates, body sentences ----
# {lux} luxury brand, {item} class item, {game} game title, {n} a count, {amt} face value.
VIOLATIONS: dict[str, dict] = {
    "counterfeit": dict(
        items=_pairs("ショルダーバッグ:bags 長財布:bags ハンドバッグ:bags トートバッグ:bags キーケース:fashion "
                     "ベルト:fashion スニーカー:sneakers"),
        titles=["{lux} 風 {item} スーパーコピー", "N級品 {lux} {item}", "{lux} 同等品 韓国製 ノーブランド {item}",
                "刻印あり 激安 {lux} {item}", "{lux} {item} 新品 激安", "{lux} ロゴ {item} 新品未使用"],
        titles_new=["工場直送 1:1 {lux} {item}", "{lux} {item} ミラー品 最高級", "1:1 品質 {lux} {item} 工場直送"],
        body=["正規品ではありませんが、クオリティはとても高いです。", "N級品のため細部まで再現されています。",
              "韓国製のノーブランド品ですが同等品としてお使いいただけます。", "刻印もしっかり入っています。",
              "本物と見分けがつかないレベルです。", "箱・保存袋・ギャランティカードはありません。", "激安でお譲りします。"],
        body_new=["工場直送の1:1クオリティです。", "ミラー品ですが素材は本物と同じです。", "1:1で再現された最新モデルです。"],
        short=["N級品", "スーパーコピー", "同等品 激安"], short_new=["1:1 工場直送", "ミラー品"], price=(1500, 9800)),
    "stolen_goods": dict(
        items=_pairs("ワイヤレスイヤホン:electronics 電動歯ブラシ:electronics ドライヤー:electronics 美容液:cosmetics "
                     "香水:cosmetics スマートウォッチ:electronics ブロックセット:toys ゲーム機本体:games"),
        titles=["未開封 大量 {item} 出所不明", "{item} 新品 多数 保証書なし", "店舗から 箱なし {item} 複数在庫",
                "業者 横流し {item} {n}個", "{item} 新品未開封 {n}個セット 保証書なし"],
        titles_new=["倉庫流出品 {item} {n}個", "社販品 大量 {item} 新品", "{item} 検品前 流出 まとめて"],
        body=["出所は聞かないでください。", "店舗から持ってきたもので複数在庫あります。", "レシートはありません。",
              "保証書なしの新品です。複数ご希望の方はコメントください。", "業者からの横流し品のため格安です。",
              "箱はありませんが未開封です。", "同じ物があと{n}個あります。"],
        body_new=["倉庫から流出した品です。", "社販品を大量に入手しました。", "検品前の流出品のため格安です。"],
        short=["大量 出所不明", "横流し品"], short_new=["倉庫流出品", "社販品 大量"], price=(800, 6000)),
    "adult": dict(
        items=_pairs("DVD:books 写真集:books 同人誌:books グッズ:toys コスチューム:fashion ローション:cosmetics"),
        titles=["成人向け {item} まとめ", "アダルト {item} 新品", "18禁 {item} セット", "大人のおもちゃ 未使用",
                "成人向け {item} 未開封", "アダルト {item} 匿名配送"],
        titles_new=["R18 {item} オトナ向け", "夜のお供 {item} 新品", "オトナ向けグッズ 未使用 R18"],
        body=["18歳未満の方の購入はご遠慮ください。", "成人向けの内容を含みます。", "アダルト商品のため返品不可です。",
              "中身が分からないよう梱包して発送します。", "大人のおもちゃです。未使用品です。"],
        body_new=["R18商品です。", "夜のお供にどうぞ。", "オトナ向けの内容です。"],
        short=["成人向け", "18禁"], short_new=["R18", "オトナ向け"], price=(800, 6000)),
    "cash_voucher": dict(
        items=_pairs(":tickets :tickets :tickets :handmade :toys"),
        titles=["Amazonギフト券 コード {amt}円分", "商品券 {amt}円分 額面以上", "現金 {amt}円 お譲りします",
                "ギフトカード {amt}円分 コード通知", "電子マネー {amt}円分 残高 譲渡", "QUOカード {amt}円 まとめて",
                "百貨店 商品券 {amt}円分"],
        titles_new=["ネクストペイ 残高 {amt}円分 チャージ済み", "ルナギフト コード {amt}円分 PIN通知",
                    "ポイポイカード {amt}円 PINコード"],
        body=["コードは取引メッセージでお送りします。", "額面以上のお値段ですが手数料込みです。", "現金での取引になります。",
              "有効期限はまだ先です。", "ギフトカードのコードを通知します。", "電子マネーの残高をお譲りします。"],
        body_new=["PINコードをメッセージで通知します。", "チャージ済みのネクストペイ残高です。", "ルナギフトのコードをお送りします。"],
        short=["ギフト券付き", "商品券 おまけ"], short_new=["ネクストペイ残高付き", "ルナギフト付き"], price=None),
    "game_account": dict(
        items=_pairs(":games :games :games :games :toys"),
        titles=["{game} アカウント 引退 まとめ", "{game} 垢 売り 最強 データ", "{game} 石 ジェム {n}個 代行",
                "{game} ランク上げ 代行 します", "{game} レベル上げ済み アカウント", "{game} 引退垢 UR多数"],
        titles_new=["{game} ID譲渡 即日", "{game} 引継ぎコード 最強データ", "{game} リセマラ済み 初期データ 引継ぎ"],
        body=["引退するためアカウントをお譲りします。", "ランク上げ代行承ります。", "石・ジェムの購入代行も可能です。",
              "レベル上げ済みですぐに遊べます。", "ログイン情報は取引メッセージでお伝えします。", "URキャラ多数所持しています。",
              "垢売りです。メールアドレスも変更可能です。"],
        body_new=["ID譲渡のためメールアドレスをお伝えします。", "引継ぎコードを取引メッセージで送ります。", "リセマラ済みのデータです。"],
        short=["アカウント付き", "垢 譲渡"], short_new=["ID譲渡", "引継ぎコード付き"], price=(2000, 48000)),
    "inappropriate": dict(
        items=_pairs("鎮痛剤:cosmetics 睡眠導入剤:cosmetics 抗生物質:cosmetics 湿布薬:cosmetics 育毛剤:cosmetics "
                     "痩せ薬:cosmetics"),
        titles=["医薬品 {item} 未開封", "処方薬 余り {n}錠", "{item} 第1類医薬品 まとめ", "海外 医薬品 {item}",
],
        titles_new=["個人輸入 {item} 未承認", "未承認 ダイエットサプリ 海外製", "個人輸入 代行 {item}"],
        body=["病院で処方された薬の余りです。", "医薬品のため使用は自己責任でお願いします。", "海外製の医薬品です。",
 "処方箋なしでお譲りします。"],
        body_new=["個人輸入した未承認の商品です。", "日本では未承認のサプリです。"],
        short=["医薬品", "処方薬"], short_new=["個人輸入", "未承認"], price=(500, 6000)),
}  # fmt: skip
# more kinds of inappropriate: (category, title, body, price range, whether a photo can show it)
INAPPROPRIATE_MORE = [
    ("cosmetics", "化粧水 小分け 5ml×{n}本", ["小分けにして容器に詰め替えました。", "衛生面はご理解ください。"], (500, 2500), True),
    ("cosmetics", "{cos} 美容液 小分け お試し {n}本", ["人気の美容液を小分けにしました。", "無許可の小分け品です。"], (500, 3000), True),
    ("tickets", "{artist} ライブチケット 定価以上 2枚連番", ["定価より高いですがご理解ください。", "転売ですが良席です。"], (20000, 60000), False),
    ("tickets", "{artist} 転売 チケット 良席 定価以上", ["高額ですが確実に入場できます。", "定価以上での転売です。"], (18000, 50000), False),
    ("books", "盗撮 DVD まとめ", ["隠しカメラで撮影したものです。", "盗撮ものです。個人情報は伏せています。"], (1000, 5000), False),
]  # fmt: skip
KEYWORDS = _w("好きな方 必見 人気 大人気 韓国 トレンド 話題 インスタ映え プチプラ 高見え ユニセックス 男女兼用 "
               "ストリート 古着 Y2K 量産型 ガーリー 北欧 ナチュラル") + LUX + sum(_B.values(), [])  # fmt: skip
KEYWORDS_NEW = _w("ハロウィン Y3K ネオレトロ 推し活 秋トレンド2026 ルミナス系")

# ---- hard negatives: clean listings that share words with a violation --------------------------
# (category, title, body sentences, price range, photo kind, drift-only)
HARD_NEGATIVES = [
    ("books", "コピー用紙 A4 500枚×{n}冊", ["事務用のコピー用紙です。", "未開封のまま保管していました。"], (1000, 3000), "copy_paper", False),
    ("electronics", "家庭用 コピー機 複合機 プリンター", ["コピー機能・スキャン機能ともに動作確認済みです。", "インクは残りわずかです。"], (3000, 12000), "electronics", False),
    ("fashion", "成人式 振袖 フルセット {color}", ["成人式で一度だけ着用しました。", "帯・草履・バッグ付きのフルセットです。", "クリーニング済みです。"], (15000, 60000), "furisode", False),
    ("games", "Switch ソフト パッケージ版 {game}", ["パッケージ版です。ケース・説明書付き。", "ダウンロード版ではありません。"], (2000, 5500), "game_package", False),
    ("handmade", "カードケース レザー ハンドメイド", ["名刺やカードを入れるケースです。", "本革を使用しています。"], (1200, 4000), "card_case", False),
    ("handmade", "ギフトボックス ラッピング {n}個セット", ["プレゼント用のギフトボックスです。", "ギフトカード用の小さな封筒も付けます。"], (500, 2000), "gift_box", False),
    ("bags", "{lux} 正規品 {item} レシート付き", ["正規店で購入しました。レシート・保存袋・箱付きです。", "ギャランティカードもあります。", "鑑定済みの正規品です。"], (60000, 380000), "bags", False),
    ("bags", "{lux} {item} 美品", ["数年前に百貨店で購入しました。", "角スレが少しあります。"], (45000, 250000), "bags", False),
    ("fashion", "子供服 まとめ売り 大量 {n}0cm", ["子供服を大量にまとめてお譲りします。", "使用感はありますがまだまだ着られます。"], (1000, 4000), "kids_clothes", False),
    ("toys", "大人も楽しめる ジグソーパズル 1000ピース", ["大人も楽しめる難易度です。", "ピースの欠品はありません。"], (800, 3000), "toys", False),
    ("books", "{game} 公式 攻略本", ["ゲームの攻略本です。", "書き込みはありません。"], (500, 1800), "books", False),
    ("tickets", "{artist} ライブチケット 定価以下 1枚", ["行けなくなったため定価以下でお譲りします。", "公式リセールも確認済みです。"], (4000, 9000), "tickets", False),
    ("cosmetics", "詰め替えボトル 空容器 トラベル用 {n}本", ["空のボトルです。中身は入っていません。", "旅行用に便利です。"], (300, 1500), "cosmetics", False),
    ("cosmetics", "シャンプー 未開封 ストック {n}本", ["買いすぎたストックです。", "未開封です。"], (800, 3000), "cosmetics", False),
    ("fashion", "ハロウィン 仮装 コスチューム キッズ", ["ハロウィンで一度着ました。", "110cm相当です。"], (800, 3000), "fashion", True),
    ("toys", "{game} フィギュア 新作", ["発売されたばかりのフィギュアです。", "箱付きです。"], (2000, 7000), "toys", True),
]  # fmt: skip
# words that only the drift month uses (tests check they never occur earlier)
DRIFT_WORDS = ["ID譲渡", "引継ぎコード", "リセマラ済み", "工場直送", "1:1", "ミラー品", "ネクストペイ",
               "ルナギフト", "ポイポイカード", "倉庫流出品", "社販品", "オトナ向け", "R18", "個人輸入",
               "未承認", "ハロウィン", "Y3K", *GAMES_NEW]  # fmt: skip


def yen(rng: random.Random, lo: int, hi: int) -> int:
    """A marketplace-looking price: round hundreds (thousands above 20,000), sometimes ...80."""
    v = rng.randint(lo, hi)
    step = 1000 if v >= 20000 else 100
    v = max(300, v // step * step)
    return v - 20 if rng.random() < 0.25 else v


def _fill(rng: random.Random, s: str, drift: bool, item: str = "") -> str:
    games = GAMES_NEW if drift and rng.random() < 0.6 else GAMES_OLD
    return s.format(lux=rng.choice(LUX), item=item, game=rng.choice(games), n=rng.randint(2, 9),
                    artist=rng.choice(ARTISTS), color=rng.choice(COLORS), cos=rng.choice(_B["cosmetics"]),
                    amt="{amt}")  # fmt: skip


def _body(rng: random.Random, middle: list[str], category: str | None) -> str:
    lines = [rng.choice(OPEN), *middle]
    if category in DETAIL and rng.random() < 0.6:
        lines.append(rng.choice(DETAIL[category]))
    lines += rng.sample(SHIP, rng.randint(1, 2)) + rng.sample(CLOSE, rng.randint(0, 2))
    return "\n".join(x for x in lines if x)


def clean_text(rng: random.Random, category: str, drift: bool) -> tuple[str, str, int, str]:
    """An ordinary listing of `category`: (title, description, price, photo kind)."""
    item, lo, hi = rng.choice(ITEMS[category])
    brand = rng.choice(_B[category]) + " " if category in _B and rng.random() < 0.7 else ""
    attr = ""
    if category in ("fashion", "sneakers"):
        size = rng.choice(SIZES) if category == "fashion" else f"{rng.randint(44, 58) / 2:.1f}cm"
        attr = f" {size} {rng.choice(COLORS)}"
    elif category == "bags" and rng.random() < 0.6:
        attr = " " + rng.choice(COLORS)
    item = _fill(rng, item, drift)
    title = f"{rng.choice(TAGS)}{brand}{item}{attr} {rng.choice(SUFFIX)}".strip()
    what = item.replace(" ", "")
    middle = [f"{brand.strip()}の{what}です。" if brand else f"{what}になります。"]
    if category != "tickets":
        middle.append(rng.choice(COND))
    if category not in ("tickets", "books") and rng.random() < 0.5:
        middle.append(rng.choice(REASON))
    desc = _body(rng, middle, category)
    if rng.random() < 0.15:
        desc += "\n#" + " #".join(rng.sample(KEYWORDS[:19], 2))
    return title, desc, yen(rng, lo, hi), category


def hard_negative(rng: random.Random, drift: bool) -> tuple[str, str, str, int, str]:
    """A clean listing sharing surface words with a violation: (category, title, desc, price, kind)."""
    options = [h for h in HARD_NEGATIVES if drift or not h[5]]
    category, title, body, (lo, hi), kind, _ = rng.choice(options)
    item = rng.choice(["ショルダーバッグ", "長財布", "ハンドバッグ"])
    title = f"{rng.choice(TAGS)}{_fill(rng, title, drift, item)}"
    desc = _body(rng, rng.sample(body, rng.randint(1, len(body))), category)
    return category, title, desc, yen(rng, lo, hi), kind


def violation_text(
    rng: random.Random, cls: str, extra: list[str], drift: bool, text_only: bool = False
) -> tuple[str, str, str, int]:
    """Text showing `cls` and a short cue per class in `extra`: (category, title, desc, price).

    `text_only` allows the kinds of `cls` that no photo could show (ticket resale, voyeurism).
    """
    v = VIOLATIONS[cls]
    new = drift and rng.random() < 0.7
    if cls == "inappropriate" and not new and rng.random() < (0.5 if text_only else 0.25):
        more = [m for m in INAPPROPRIATE_MORE if text_only or m[4]]
        category, template, body, (lo, hi), _ = rng.choice(more)
        title, middle, price = _fill(rng, template, drift), list(body), yen(rng, lo, hi)
    else:
        item, category = rng.choice(v["items"])
        title = _fill(rng, rng.choice(v["titles_new" if new else "titles"]), drift, item)
        pool = v["body_new"] + rng.sample(v["body"], 1) if new else v["body"]
        middle = [_fill(rng, s, drift) for s in rng.sample(pool, min(len(pool), rng.randint(2, 3)))]
        if v["price"] is None:  # a cash voucher sells above face value
            amt = rng.choice([1000, 3000, 5000, 10000, 30000, 50000])
            title = title.replace("{amt}", f"{amt:,}" if rng.random() < 0.5 else str(amt))
            price = int(amt * rng.uniform(1.05, 1.3)) // 10 * 10
        else:
            price = yen(rng, *v["price"])
    for other in extra:
        o = VIOLATIONS[other]
        short = o["short_new"] if drift and rng.random() < 0.7 else o["short"]
        title += " " + rng.choice(short)
        middle.append(_fill(rng, rng.choice(o["body_new" if new else "body"]), drift))
    if rng.random() < 0.4:
        title = rng.choice(TAGS) + title
    return category, title, _body(rng, list(dict.fromkeys(middle)), None), price


def neutral_text(rng: random.Random, cls: str, drift: bool) -> tuple[str, str, str, int]:
    """Clean-looking text in a category where `cls` is common (its cue is in the photos only)."""
    category = rng.choice(VIOLATIONS[cls]["items"])[1]
    title, desc, price, _ = clean_text(rng, category, drift)
    return category, title, desc, price


def stuff_keywords(rng: random.Random, title: str, desc: str, drift: bool) -> tuple[str, str]:
    """Append long lists of unrelated brands and trend words to the title and description."""
    pool = KEYWORDS + (KEYWORDS_NEW * 3 if drift and rng.random() < 0.8 else [])
    words = list(dict.fromkeys(rng.sample(pool, rng.randint(8, 14))))
    title = f"{title} {' '.join(words[: rng.randint(5, 8)])} 好きな方 必見"
    tail = rng.sample(pool, rng.randint(8, 14))
    sep = rng.choice(["\n関連ワード: ", "\n#", "\n検索用 "])
    joiner = " #" if sep == "\n#" else " "
    return title, desc + sep + joiner.join(dict.fromkeys(tail))
