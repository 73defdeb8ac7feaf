"""The console's words in Thai (first) and English: one catalogue, looked up by key.

A page asks for ``t("key")``; a key missing in a language is a bug the tests catch (every key
has both). Measures of :mod:`kiosk.fleet.statistics` are keys too, so a table's column reads
in the page's language while its CSV keeps the measure's own name.
"""

from kiosk import visit as schema

LANGUAGES = ("th", "en")
DEFAULT = "th"

CATALOGUE = {
    "app.title": ("คอนโซลตู้ CITIZENinfo", "CITIZENinfo console"),
    "nav.fleet": ("ตู้ทั้งหมด", "Fleet"),
    "nav.stats": ("สถิติ", "Statistics"),
    "nav.commands": ("คำสั่ง", "Commands"),
    "nav.logout": ("ออกจากระบบ", "Log out"),
    "nav.other_language": ("English", "ภาษาไทย"),
    "login.title": ("เข้าสู่ระบบ", "Log in"),
    "login.name": ("ชื่อผู้ใช้", "User name"),
    "login.password": ("รหัสผ่าน", "Password"),
    "login.submit": ("เข้าสู่ระบบ", "Log in"),
    "login.failed": ("ชื่อผู้ใช้หรือรหัสผ่านไม่ถูกต้อง", "Wrong user name or password"),
    "login.braked": ("ลองผิดหลายครั้งเกินไป โปรดรอหนึ่งนาที",
                     "Too many failed attempts; wait a minute"),
    "role.viewer": ("ผู้ดู", "viewer"),
    "role.operator": ("ผู้ปฏิบัติการ", "operator"),
    "error.csrf": ("แบบฟอร์มหมดอายุ โปรดโหลดหน้าใหม่แล้วลองอีกครั้ง",
                   "The form has expired; reload the page and try again"),
    "error.forbidden": ("เฉพาะผู้ปฏิบัติการเท่านั้น", "Operators only"),
    "error.not_found": ("ไม่พบหน้านี้", "Page not found"),
    "fleet.title": ("สถานะตู้", "Fleet status"),
    "fleet.kiosk": ("ตู้", "Kiosk"),
    "fleet.state": ("สถานะ", "State"),
    "fleet.last_seen": ("ติดต่อล่าสุด", "Last seen"),
    "fleet.outbox": ("คิวรอส่ง", "Outbox"),
    "fleet.dead": ("ส่งไม่สำเร็จ", "Dead letters"),
    "fleet.reader": ("เครื่องอ่านบัตร", "Card reader"),
    "fleet.disk": ("พื้นที่ว่าง (MB)", "Disk free (MB)"),
    "fleet.clock": ("นาฬิกา", "Clock"),
    "fleet.clock_synced": ("ตรงแล้ว", "synced"),
    "fleet.clock_unsynced": ("ยังไม่ตรง", "unsynced"),
    "fleet.version": ("รุ่น", "Version"),
    "fleet.alarms": ("การแจ้งเตือนที่เปิดอยู่", "Open alarms"),
    "fleet.place": ("จุดบริการ", "Service point"),
    "fleet.province": ("จังหวัด", "Province"),
    "fleet.ministry": ("กระทรวง", "Ministry"),
    "fleet.department": ("กรม", "Department"),
    "fleet.alarm": ("การแจ้งเตือน", "Alarm"),
    "fleet.any": ("ทั้งหมด", "any"),
    "fleet.filter": ("กรอง", "Filter"),
    "fleet.count": ("จำนวนตู้", "Kiosks shown"),
    "fleet.none": ("ไม่มีตู้ที่ตรงเงื่อนไข", "No kiosk matches"),
    "fleet.live": ("อัปเดตอัตโนมัติ", "Updates live"),
    "kiosk.title": ("ตู้", "Kiosk"),
    "kiosk.history": ("ประวัติการแจ้งเตือน", "Alarm history"),
    "kiosk.raised": ("เริ่ม", "Raised"),
    "kiosk.cleared": ("สิ้นสุด", "Cleared"),
    "kiosk.open": ("ยังเปิดอยู่", "still open"),
    "kiosk.kind": ("ประเภท", "Kind"),
    "kiosk.detail": ("รายละเอียด", "Detail"),
    "kiosk.recorded": ("เหตุที่บันทึกไว้", "Recorded events"),
    "kiosk.count": ("จำนวนครั้ง", "Times"),
    "kiosk.replies": ("คำตอบต่อคำสั่ง", "Command replies"),
    "kiosk.received": ("ได้รับเมื่อ", "Received"),
    "kiosk.correlation": ("รหัสคำสั่ง", "Command id"),
    "kiosk.result": ("ผล", "Result"),
    "kiosk.periods": ("ช่วงเวลาที่ตรวจนับ", "Period counts"),
    "stats.title": ("สถิติ", "Statistics"),
    "stats.from": ("ตั้งแต่", "From"),
    "stats.to": ("ถึง", "To"),
    "stats.show": ("แสดง", "Show"),
    "stats.national": ("ทั้งประเทศ", "National"),
    "stats.by_province": ("รายจังหวัด", "By province"),
    "stats.contradictions": ("ขัดแย้ง: ประกาศยกเลิกสำเนาแล้ว แต่ประชาชนยังถูกขอสำเนา",
                             "Contradictions: declared no-copy, yet citizens report copies"),
    "stats.no_contradictions": ("ไม่พบความขัดแย้ง", "No contradiction"),
    "stats.figures": ("ตัวเลข", "Figures"),
    "stats.below": ("แยกย่อย", "Broken down"),
    "stats.csv": ("ดาวน์โหลด CSV", "Download CSV"),
    "stats.empty": ("ไม่มีข้อมูลในช่วงนี้", "No data in this range"),
    "stats.hidden": ("<5 = ซ่อนไว้เพื่อคุ้มครองความเป็นส่วนตัว; ว่าง = ไม่เผยแพร่",
                     "<5 = hidden to protect privacy; blank = withheld"),
    "stats.bad_range": ("ช่วงวันที่ไม่ถูกต้อง", "The date range is not valid"),
    "level.national": ("ทั้งประเทศ", "national"),
    "level.ministry": ("กระทรวง", "ministry"),
    "level.department": ("กรม", "department"),
    "level.service_point": ("จุดบริการ", "service point"),
    "level.service": ("บริการ", "service"),
    "level.province": ("จังหวัด", "province"),
    "table.visits": ("การใช้งาน", "Visits"),
    "table.ratings": ("ความพึงพอใจ", "Ratings"),
    "table.copy": ("การขอสำเนา", "Copies asked"),
    "table.no_copy": ("การขอสำเนา ตามบริการ", "Copies asked, by service"),
    "table.abandoned": ("การออกกลางคัน", "Abandoned"),
    "table.reasons": ("เหตุผลของคะแนนต่ำ", "Reasons for low ratings"),
    "table.card": ("การรับบัตรคืน", "Card taken back"),
    "table.undo": ("การแก้ไขคำตอบ", "Answers changed"),
    "table.progress": ("ความคืบหน้า", "Progress"),
    "service.other": ("บริการอื่น", "Other service"),
    "col.ministry": ("กระทรวง", "Ministry"),
    "col.department": ("กรม", "Department"),
    "col.service_point_id": ("จุดบริการ", "Service point"),
    "col.province": ("จังหวัด", "Province"),
    "col.service_id": ("บริการ", "Service"),
    "col.declared": ("สถานะที่ประกาศ", "Declared"),
    "m.visits": ("ครั้ง", "visits"),
    "m.verified": ("ยืนยันตัวตน", "verified"),
    "m.unverified": ("ไม่ยืนยันตัวตน", "unverified"),
    "m.verified_share": ("สัดส่วนยืนยันตัวตน", "verified share"),
    "m.rated": ("ให้คะแนน", "rated"),
    "m.mean": ("คะแนนเฉลี่ย", "mean"),
    "m.csat": ("พึงพอใจ (4-5)", "CSAT (4-5)"),
    "m.answered": ("ตอบ", "answered"),
    "m.asked": ("ถูกขอสำเนา", "asked"),
    "m.not_asked": ("ไม่ถูกขอ", "not asked"),
    "m.not_sure": ("ไม่แน่ใจ", "not sure"),
    "m.copy_request_rate": ("อัตราการขอสำเนา", "copy-request rate"),
    "m.not_sure_share": ("สัดส่วนไม่แน่ใจ", "not-sure share"),
    "m.observed_rate": ("อัตราที่พบ", "observed rate"),
    "m.contradiction": ("ขัดแย้ง", "contradiction"),
    "m.completed": ("สำเร็จ", "completed"),
    "m.low_rated": ("คะแนนต่ำ", "low rated"),
    "m.card_visits": ("ใช้บัตร", "card visits"),
    "m.card_left_in": ("บัตรยังค้างในเครื่อง", "card left in"),
    "m.card_taken": ("รับบัตรคืนแล้ว", "card taken"),
    "m.card_left_in_share": ("สัดส่วนบัตรค้างในเครื่อง", "card-left-in share"),
    "m.undone": ("แก้ไขคำตอบ", "answer changed"),
    "m.not_undone": ("ไม่ได้แก้ไข", "not changed"),
    "m.undone_share": ("สัดส่วนที่แก้ไขคำตอบ", "changed share"),
    "m.top_reasons": ("เหตุผลหลัก", "top reasons"),
    "m.registered": ("ลงทะเบียน", "registered"),
    "m.pinned": ("ปักหมุด", "pinned"),
    "m.reporting": ("ส่งข้อมูล", "reporting"),
    "m.pinned_reporting": ("ปักหมุด ส่งข้อมูล", "pinned, reporting"),
    "m.pinned_silent": ("ปักหมุด ไม่ส่ง", "pinned, silent"),
    "m.unpinned_reporting": ("ไม่ปักหมุด ส่งข้อมูล", "unpinned, reporting"),
    "m.unpinned_silent": ("ไม่ปักหมุด ไม่ส่ง", "unpinned, silent"),
    "cmd.title": ("ส่งคำสั่ง", "Send a command"),
    "cmd.kiosk": ("ตู้เดียว (รหัสตู้)", "One kiosk (its id)"),
    "cmd.or_filter": ("หรือทุกตู้ที่ตรงกับตัวกรอง", "or every kiosk the filter selects"),
    "cmd.command": ("คำสั่ง", "Command"),
    "cmd.config": ("ค่าที่ตั้งใหม่ (JSON: version และ services, flow หรือ portal)",
                   "New config (JSON: version plus services, flow or portal)"),
    "cmd.event_ids": ("replay: รหัสเหตุการณ์ (เว้นวรรค)", "replay: event ids (spaces)"),
    "cmd.send": ("ส่ง", "Send"),
    "cmd.sent": ("ส่งคำสั่งแล้ว", "Command sent"),
    "cmd.waiting": ("รอคำตอบ", "waiting for a reply"),
    "cmd.ok": ("สำเร็จ", "ok"),
    "cmd.error": ("ผิดพลาด", "error"),
    "cmd.recent": ("คำสั่งล่าสุด", "Recent commands"),
    "cmd.viewer": ("ผู้ดูไม่สามารถส่งคำสั่งได้", "Viewers cannot send commands"),
    "cmd.failed": ("ส่งคำสั่งไม่สำเร็จ", "The command could not be sent"),
    "cmd.targets": ("ตู้เป้าหมาย", "Targets"),
    "cmd.by": ("ส่งโดย", "Sent by"),
    "state.online": ("ออนไลน์", "online"),
    "state.offline": ("ออฟไลน์", "offline"),
    "state.lost": ("ขาดการติดต่อ", "lost"),
    "state.unknown": ("ไม่ทราบ", "unknown"),
    "refresh": ("โหลดใหม่", "Refresh"),
    "nav.rollouts": ("อัปเดตซอฟต์แวร์", "Rollouts"),
    "ro.title": ("การทยอยอัปเดตซอฟต์แวร์", "Staged rollouts"),
    "ro.id": ("รหัสการอัปเดต", "Rollout"),
    "ro.version": ("เวอร์ชัน", "Version"),
    "ro.state": ("สถานะ", "State"),
    "ro.scope": ("ขอบเขต", "Scope"),
    "ro.threshold": ("หยุดเองเมื่อย้อนกลับเกิน", "Pauses past rollbacks of"),
    "ro.targeted": ("ตู้เป้าหมาย", "Targeted"),
    "ro.of": ("ของ", "of"),
    "ro.the_fleet": ("ตู้ทั้งหมด", "the fleet"),
    "ro.progress": ("ความคืบหน้า (ตู้ต่อขั้น)", "Progress (kiosks per step)"),
    "ro.created": ("เริ่มเมื่อ", "Started"),
    "ro.paused_reason": ("เหตุที่หยุด", "Why paused"),
    "ro.kiosk_state": ("ขั้นการอัปเดต", "Update step"),
    "ro.reason": ("เหตุผล", "Reason"),
    "ro.updated": ("รายงานล่าสุด", "Last report"),
    "ro.withdrawn": ("ถอนคำสั่งแล้ว", "command withdrawn"),
    "ro.pause": ("หยุดชั่วคราว (ถอนคำสั่งจากตู้ที่ยังไม่สลับ)",
                 "Pause (withdraw from kiosks not switched)"),
    "ro.resume": ("ดำเนินการต่อ", "Resume"),
    "ro.none": ("ยังไม่มีการอัปเดต", "No rollout yet"),
    "ro.failed": ("ดำเนินการไม่สำเร็จ", "The action failed"),
    "ro.viewer": ("ผู้ดูไม่สามารถเริ่ม ขยาย หยุด หรือดำเนินการต่อได้",
                  "Viewers cannot start, widen, pause or resume a rollout"),
    "ro.start_title": ("เริ่มการทยอยอัปเดต", "Start a rollout"),
    "ro.start": ("เริ่มส่งคำสั่งอัปเดต", "Start: send the update command"),
    "ro.start_hint": ("ตู้ถูกเลือกตามร้อยละของตู้ที่ตรงกับตัวกรอง (ปัดขึ้น) "
                      "เหมือน kiosk-fleet rollout start",
                      "The kiosks are that percentage (rounded up) of those the filters "
                      "select, as kiosk-fleet rollout start takes them"),
    "ro.not_started": ("ไม่ได้เริ่ม ไม่มีการบันทึกหรือส่งคำสั่ง",
                       "Not started; nothing recorded or sent"),
    "ro.url": ("URL ของรุ่น (https://)", "Release URL (https://)"),
    "ro.sha256": ("SHA-256 ของ manifest (ตามที่ kiosk-fleet release build พิมพ์)",
                  "Manifest SHA-256 (as kiosk-fleet release build prints it)"),
    "ro.percent": ("ร้อยละของตู้", "Percentage of kiosks"),
    "ro.threshold_field": ("หยุดเองเมื่อตู้ย้อนกลับเกิน (ร้อยละ)",
                           "Pause by itself past rollbacks of (%)"),
    "ro.widen": ("ขยาย", "Widen"),
    "ro.widen_to": ("ขยายเป็นร้อยละ", "Widen to percentage"),
    "ro.widen_paused": ("หยุดอยู่: ดำเนินการต่อก่อนจึงจะขยายได้",
                        "Paused: resume it before widening"),
    "ro.withdraw_again": ("ถอนคำสั่งอีกครั้ง", "Withdraw again"),
    "ro.withdraw_again_hint": ("ส่งข้อความว่างแบบ retained อีกครั้งถึงตู้ที่ยังไม่สลับ "
                               "(หากการถอนครั้งก่อนถูกตัด)",
                               "Publish the empty retained messages again to the kiosks not "
                               "switched (if the first withdrawal was cut)"),
    "ro.done.started": ("เริ่มแล้ว ส่งคำสั่งถึงตู้", "Started; command sent to kiosks"),
    "ro.done.widened": ("ขยายแล้ว ส่งคำสั่งถึงตู้เพิ่ม", "Widened; command sent to more kiosks"),
    "ro.done.paused": ("หยุดแล้ว ถอนคำสั่งจากตู้", "Paused; command withdrawn from kiosks"),
    "ro.done.withdrawn_again": ("หยุดอยู่แล้ว ถอนคำสั่งอีกครั้งจากตู้ที่ยังไม่สลับ",
                                "Already paused; command withdrawn again from kiosks not "
                                "switched"),
    "ro.done.resumed": ("ดำเนินการต่อแล้ว ส่งคำสั่งอีกครั้งถึงตู้",
                        "Resumed; command sent again to kiosks"),
    "map.nav": ("แผนที่", "Map"),
    "map.title": ("แผนที่จุดบริการ", "Service points on the map"),
    "map.colour_by": ("สีตาม", "Colour by"),
    "map.by.status": ("สถานะตู้", "Kiosk status"),
    "map.by.csat": ("ความพึงพอใจ", "Satisfaction"),
    "map.by.copy": ("อัตราการขอสำเนา", "Copy-request rate"),
    "map.status.online": ("ออนไลน์", "online"),
    "map.status.alarm": ("มีการแจ้งเตือน", "alarm open"),
    "map.status.offline": ("ออฟไลน์", "offline"),
    "map.status.lost": ("ขาดการติดต่อ", "lost"),
    "map.status.unknown": ("ไม่ทราบ", "unknown"),
    "map.status.no_kiosk": ("ยังไม่มีตู้", "no kiosk yet"),
    "map.grade.csat.good": ("พึงพอใจ 80% ขึ้นไป", "CSAT 80% or more"),
    "map.grade.csat.fair": ("60-80%", "60-80%"),
    "map.grade.csat.poor": ("ต่ำกว่า 60%", "under 60%"),
    "map.grade.csat.none": ("ไม่มีข้อมูลหรือไม่เผยแพร่", "no data or withheld"),
    "map.grade.copy.good": ("ขอสำเนาไม่เกิน 5%", "copies asked 5% or less"),
    "map.grade.copy.fair": ("5-20%", "5-20%"),
    "map.grade.copy.poor": ("เกิน 20%", "over 20%"),
    "map.grade.copy.none": ("ไม่มีข้อมูลหรือไม่เผยแพร่", "no data or withheld"),
    "map.attribution": ("© ผู้ร่วมสร้าง OpenStreetMap", "© OpenStreetMap contributors"),
    "map.points": ("จุดบริการ", "Service points"),
    "map.name": ("ชื่อ", "Name"),
    "map.kiosks": ("ตู้", "Kiosks"),
    "map.pinned": ("ปักหมุด", "Pinned"),
    "map.visits": ("ครั้ง", "Visits"),
    "map.csat": ("พึงพอใจ (4-5)", "CSAT (4-5)"),
    "map.copy": ("อัตราการขอสำเนา", "Copy-request rate"),
    "chart.section": ("แผนภูมิ", "Charts"),
    "chart.distribution": ("คะแนนความพึงพอใจ 1-5", "Ratings, 1 to 5"),
    "chart.visits": ("การใช้งานรายสัปดาห์", "Visits by week"),
    "chart.csat": ("ความพึงพอใจ (4-5) รายสัปดาห์", "CSAT (4-5) by week"),
    "chart.copy": ("อัตราการขอสำเนารายสัปดาห์", "Copy-request rate by week"),
}


#: Where a visit ended, and the reasons a citizen may give for a low rating.
STEPS = {
    "idle": ("หน้าแรก", "start"), "reading": ("อ่านบัตร", "reading"),
    "card_problem": ("บัตรมีปัญหา", "card problem"),
    "already_rated": ("ให้คะแนนแล้ว", "already rated"),
    "choose_service": ("เลือกบริการ", "choosing a service"),
    "copy_check": ("ถามเรื่องสำเนา", "copy question"), "rating": ("ให้คะแนน", "rating"),
    "reason": ("เหตุผล", "reason"), "thank_you": ("ขอบคุณ", "thank you"),
    "take_card": ("รับบัตรคืน", "taking the card"),
    "out_of_service": ("งดให้บริการ", "out of service"),
    "return_card": ("คืนบัตรหลังอ่าน", "card handed back"),
    "confirm": ("ยืนยันคำตอบ", "confirming the answers"),
}
REASONS = {
    "waiting_time": ("รอนาน", "waiting time"), "staff": ("เจ้าหน้าที่", "staff"),
    "copies_requested": ("ถูกขอสำเนา", "copies requested"),
    "unclear_process": ("ขั้นตอนไม่ชัดเจน", "unclear process"), "other": ("อื่น ๆ", "other"),
}
CATALOGUE.update({f"m.rating_{r}": (f"{r} คะแนน", f"rated {r}") for r in schema.RATINGS})
CATALOGUE.update({f"m.{reason}": texts for reason, texts in REASONS.items()})
for _step, (_th, _en) in STEPS.items():
    CATALOGUE[f"m.abandoned_{_step}"] = (f"ออกที่{_th}", f"left at {_en}")
    CATALOGUE[f"m.abandoned_share_{_step}"] = (f"สัดส่วนออกที่{_th}", f"share left at {_en}")


#: The units of :func:`kiosk.fleet.status.age` ("5m ago"), read back for the page.
AGE_UNITS = {"d": ("วัน", "d"), "h": ("ชั่วโมง", "h"), "m": ("นาที", "min"), "s": ("วินาที", "s")}


def age(text, language):
    """``status.age``'s "5m ago" (or "never") in ``language``."""
    if text == "never":
        return "ไม่เคย" if language == "th" else "never"
    number, unit = text.removesuffix(" ago")[:-1], text.removesuffix(" ago")[-1]
    if language == "th":
        return f"{number} {AGE_UNITS[unit][0]}ที่แล้ว"
    return f"{number} {AGE_UNITS[unit][1]} ago"


def translate(key, language):
    """The text of ``key`` in ``language``; an unknown key shows as itself (a data value)."""
    entry = CATALOGUE.get(key)
    if entry is None:
        return key
    return entry[LANGUAGES.index(language) if language in LANGUAGES else 0]


def measure(name, language):
    """A statistics measure's label, or its own name where the catalogue has none
    (``abandoned_share_<step>`` and the like)."""
    text = translate(f"m.{name}", language)
    return name.replace("_", " ") if text == f"m.{name}" else text
