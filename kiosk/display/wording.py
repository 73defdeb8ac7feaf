"""Every word the kiosk shows or says, in Thai and English.

Kept apart from the drawing so translators (and the audio prompts) read one table. Thai is
polite and plain for older citizens; English is the second language for foreign residents.
"""

from kiosk.flow import Screen

#: Screen -> language -> (title, line under it). The title is also the spoken prompt.
TITLES = {
    Screen.IDLE: {
        "th": ("กรุณาเสียบบัตรประชาชน", "เพื่อประเมินความพึงพอใจในการรับบริการวันนี้"),
        "en": ("Please insert your ID card", "to rate today's service"),
    },
    Screen.READING: {
        "th": ("กำลังอ่านบัตร", "กรุณาเสียบบัตรค้างไว้สักครู่"),
        "en": ("Reading your card", "Please leave the card in for a moment"),
    },
    Screen.RETURN_CARD: {
        "th": ("กรุณารับบัตรประชาชนคืน", "แล้วตอบคำถามสั้น ๆ บนจอ"),
        "en": ("Please take your ID card", "Then answer a few short questions"),
    },
    Screen.CARD_PROBLEM: {
        "th": ("อ่านบัตรไม่สำเร็จ", ""),
        "en": ("We could not read your card", ""),
    },
    Screen.ALREADY_RATED: {
        "th": ("คุณประเมินบริการนี้แล้ว", "ในช่วง {window}ที่ผ่านมา ขอบคุณที่ให้ความเห็น"),
        "en": ("You have already rated this service", "in the last {window}. Thank you."),
    },
    Screen.CHOOSE_SERVICE: {
        "th": ("วันนี้คุณมารับบริการใด", ""),
        "en": ("Which service did you use today?", ""),
    },
    Screen.COPY_CHECK: {
        "th": ("วันนี้เจ้าหน้าที่ขอสำเนาเอกสารจากคุณหรือไม่", ""),
        "en": ("Did the staff ask you for a photocopy today?", ""),
    },
    Screen.RATING: {
        "th": ("คุณพึงพอใจกับบริการวันนี้เพียงใด", ""),
        "en": ("How satisfied are you with today's service?", ""),
    },
    Screen.REASON: {
        "th": ("เรื่องใดที่เราควรปรับปรุง", ""),
        "en": ("What should we improve?", ""),
    },
    Screen.CONFIRM: {
        "th": ("ตรวจสอบคำตอบของคุณ", ""),
        "en": ("Please check your answers", ""),
    },
    Screen.THANK_YOU: {
        "th": ("ขอบคุณที่ให้ความเห็น", "สแกนด้วยกล้องโทรศัพท์ เพื่อใช้บริการออนไลน์ของหน่วยงานนี้"),
        "en": ("Thank you for your feedback",
               "Scan with your phone camera to use this office's online services"),
    },
    Screen.TAKE_CARD: {
        "th": ("กรุณารับบัตรประชาชนคืน", "บัตรของคุณยังอยู่ในเครื่องอ่าน"),
        "en": ("Please take your ID card", "Your card is still in the reader"),
    },
    Screen.OUT_OF_SERVICE: {
        "th": ("เครื่องนี้งดให้บริการชั่วคราว", "กรุณาติดต่อเจ้าหน้าที่"),
        "en": ("This machine is out of service", "Please ask a member of staff"),
    },
}

#: The out-of-service screen's titles while the suspension's reason starts with a key here: a
#: newly updated version proving itself healthy is not "out of service" to a citizen.
SUSPENSION_TITLES = {
    "update_check": {
        "th": ("กรุณารอสักครู่", "เครื่องกำลังเตรียมพร้อมให้บริการ"),
        "en": ("One moment, please", "This machine is getting ready"),
    },
}


def suspension_titles(reason):
    """(title, line) per language for the out-of-service screen with ``reason``."""
    for prefix, titles in SUSPENSION_TITLES.items():
        if (reason or "").startswith(prefix):
            return titles
    return TITLES[Screen.OUT_OF_SERVICE]


#: Take-card once its owner has gone (the flow's ``card_forgotten``): whoever passes is asked to
#: hand the card to staff, not told it is theirs.
FORGOTTEN_CARD = {
    "th": ("มีบัตรประชาชนลืมไว้ในเครื่อง", "กรุณานำบัตรไปมอบให้เจ้าหน้าที่"),
    "en": ("An ID card was left in the machine", "Please give it to a member of staff"),
}
#: Its prompt id (see :func:`prompt_id`).
FORGOTTEN_PROMPT = f"{Screen.TAKE_CARD.value}-forgotten"

# Accurate, not reassuring: a keyed hash of the card is kept for the repeat window, so the
# notice promises what is true (no name or ID number is kept), not "no personal data".
PRIVACY = {
    "th": "อ่านบัตรเพื่อนับหนึ่งความเห็นต่อบริการเท่านั้น ไม่เก็บชื่อหรือเลขบัตร",
    "en": "The card only counts one rating per service; your name and ID number are not kept.",
}

#: The card-problem screen, one per :data:`kiosk.flow.CARD_PROBLEMS` value: what happened (the
#: title) and what to do, in numbered steps.
CARD_PROBLEMS = {
    "unreadable": {
        "th": ("อ่านบัตรไม่สำเร็จ", ("ดึงบัตรออก", "เช็ดชิปสีทองให้สะอาด", "แล้วเสียบบัตรใหม่")),
        "en": ("We could not read your card",
               ("Take the card out", "Wipe the gold chip", "Insert it again")),
    },
    "not_thai_id": {
        "th": ("บัตรนี้ไม่ใช่บัตรประชาชน", ("ดึงบัตรออก", "เสียบบัตรประชาชนของคุณ")),
        "en": ("This is not a Thai ID card", ("Take the card out", "Insert your Thai ID card")),
    },
    # A read that timed out is most often a dirty chip: the same words as unreadable.
    "timeout": {
        "th": ("อ่านบัตรไม่สำเร็จ", ("ดึงบัตรออก", "เช็ดชิปสีทองให้สะอาด", "แล้วเสียบบัตรใหม่")),
        "en": ("We could not read your card",
               ("Take the card out", "Wipe the gold chip", "Insert it again")),
    },
    "removed": {
        "th": ("บัตรถูกดึงออกก่อนอ่านเสร็จ", ("เสียบบัตรใหม่", "รอจนจอขอให้รับบัตรคืน")),
        "en": ("The card came out too soon",
               ("Insert the card again", "Wait until the screen asks for it back")),
    },
    "no_reader": {
        "th": ("เครื่องอ่านบัตรไม่พร้อมใช้งาน", ("กรุณาแจ้งเจ้าหน้าที่",)),
        "en": ("The card reader is not working", ("Please tell a member of staff",)),
    },
}

#: The "other service" choice (visit.OTHER_SERVICE), after the agency's own services.
OTHER_SERVICE = {"th": "บริการอื่น", "en": "Other service"}

COPY_ANSWERS = {
    "none": {"th": "ไม่ได้ขอสำเนา", "en": "No, none"},
    "id_card": {"th": "สำเนาบัตรประชาชน", "en": "Copy of ID card"},
    "house_registration": {"th": "สำเนาทะเบียนบ้าน", "en": "Copy of house registration"},
    "both": {"th": "ขอทั้งสองอย่าง", "en": "Both"},
    "not_sure": {"th": "ไม่แน่ใจ", "en": "Not sure"},
}

RATINGS = {
    1: {"th": "ไม่พอใจมาก", "en": "Very dissatisfied"},
    2: {"th": "ไม่พอใจ", "en": "Dissatisfied"},
    3: {"th": "ปานกลาง", "en": "Neutral"},
    4: {"th": "พอใจ", "en": "Satisfied"},
    5: {"th": "พอใจมาก", "en": "Very satisfied"},
}

#: Every reason the schema knows, retired ones included (a stored visit may still name them).
REASONS = {
    "waiting_time": {"th": "รอนาน", "en": "Waiting time"},
    "staff": {"th": "การบริการของเจ้าหน้าที่", "en": "Staff"},
    "copies_requested": {"th": "ถูกขอสำเนาเอกสาร", "en": "Copies requested"},
    "unclear_process": {"th": "ขั้นตอนไม่ชัดเจน", "en": "Unclear process"},
    "other": {"th": "เรื่องอื่น ๆ", "en": "Other"},
}

#: The confirm screen's row names.
ANSWER_NAMES = {
    "service": {"th": "บริการ", "en": "Service"},
    "copy": {"th": "สำเนา", "en": "Photocopy"},
    "rating": {"th": "ความพึงพอใจ", "en": "Satisfaction"},
    "reason": {"th": "ควรปรับปรุง", "en": "To improve"},
}

#: The confirm screen's countdown; ``{s}`` is whole seconds left.
SENDING_IN = {"th": "ส่งอัตโนมัติใน {s} วินาที", "en": "Sending automatically in {s} s"}

#: "30 minutes", "2 hours": the repeat window as a citizen reads it.
WINDOW = {
    "minute": {"th": "1 นาที", "en": "minute"},
    "minutes": {"th": "{n} นาที", "en": "{n} minutes"},
    "hours": {"th": "{n} ชั่วโมง", "en": "{n} hours"},
    "hour": {"th": "1 ชั่วโมง", "en": "hour"},
}

#: Under the QR code: the address the code leads to, so a citizen can check it is the real one.
PORTAL_ADDRESS = {"th": "เว็บไซต์ {host}", "en": "Website: {host}"}

BUTTONS = {
    # The language button is labelled in the language it switches to.
    "language": {"th": "English", "en": "ภาษาไทย"},
    "back": {"th": "ย้อนกลับ", "en": "Back"},
    "ok": {"th": "ตกลง", "en": "OK"},
    "send": {"th": "ตกลง ส่งคำตอบ", "en": "OK, send"},
    "change": {"th": "แก้ไขคำตอบ", "en": "Change my answer"},
    "try_again": {"th": "ลองใหม่", "en": "Try again"},
    "done": {"th": "เสร็จสิ้น", "en": "Done"},
    "skip": {"th": "ข้ามคำถามนี้", "en": "Skip this question"},
    "without_card": {"th": "ประเมินโดยไม่ใช้บัตร", "en": "Rate without a card"},
    "more": {"th": "ดูบริการเพิ่มเติม", "en": "More services"},
}

#: Out of service: the technician's line, apart from the citizen's words; the reason itself is
#: the kiosk's own (English) text and goes on a line of its own.
TECHNICIAN = {"th": "สำหรับช่างเทคนิค", "en": "For the technician"}


def window_text(minutes, language):
    """The repeat window in words: ``30 minutes``, ``1 hour``, ``2 hours``."""
    if minutes == 1:
        return WINDOW["minute"][language]
    if minutes % 60:
        return WINDOW["minutes"][language].format(n=minutes)
    if minutes == 60:
        return WINDOW["hour"][language]
    return WINDOW["hours"][language].format(n=minutes // 60)


#: The card reminder's prompt id: spoken with the reminder beep while a card is left in.
CARD_REMINDER = "card_reminder"

#: Prompt id -> language -> what is said: every Screen's value (as the screen appears), each
#: card problem's ``card_problem-<problem>``, and :data:`CARD_REMINDER`. A prompt says what the
#: screen is for and, where the title alone does not, what to do; plain spoken sentences, as
#: a counter clerk would say them. Each is one file of an agency's recordings (audio.py).
PROMPTS = {
    Screen.IDLE.value: {
        "th": "กรุณาเสียบบัตรประชาชน เพื่อประเมินความพึงพอใจในการรับบริการ",
        "en": "Please insert your ID card to rate the service.",
    },
    Screen.READING.value: {
        "th": "กำลังอ่านบัตร กรุณาเสียบบัตรค้างไว้สักครู่",
        "en": "Reading your card. Please leave it in for a moment.",
    },
    Screen.RETURN_CARD.value: {
        "th": "กรุณารับบัตรประชาชนคืน",
        "en": "Please take your ID card.",
    },
    Screen.CARD_PROBLEM.value: {
        "th": "อ่านบัตรไม่สำเร็จ ดึงบัตรออก เช็ดชิปสีทองให้สะอาด แล้วเสียบบัตรใหม่",
        "en": "We could not read your card. Take the card out, wipe the gold chip, "
              "insert it again.",
    },
    "card_problem-not_thai_id": {
        "th": "บัตรนี้ไม่ใช่บัตรประจำตัวประชาชน กรุณาใช้บัตรประชาชนของคุณ",
        "en": "This is not a Thai ID card. Please use your national ID card.",
    },
    "card_problem-removed": {
        "th": "บัตรถูกดึงออกก่อนอ่านเสร็จ กรุณาเสียบบัตรใหม่ และเสียบค้างไว้จนกว่าจะอ่านเสร็จ",
        "en": "The card was taken out too early. Insert it again and leave it in until "
              "reading is finished.",
    },
    "card_problem-no_reader": {
        "th": "เครื่องอ่านบัตรไม่พร้อมใช้งาน กรุณาแจ้งเจ้าหน้าที่",
        "en": "The card reader is not working. Please tell a staff member.",
    },
    # No time window here: the screen states it; what is said must stay true when it changes.
    Screen.ALREADY_RATED.value: {
        "th": "คุณประเมินบริการนี้ไปแล้ว ขอบคุณที่ให้ความเห็น",
        "en": "You have already rated this service. Thank you for your feedback.",
    },
    Screen.CHOOSE_SERVICE.value: {
        "th": "วันนี้คุณมารับบริการใด",
        "en": "Which service did you use today?",
    },
    Screen.COPY_CHECK.value: {
        "th": "วันนี้เจ้าหน้าที่ขอสำเนาเอกสารจากคุณหรือไม่",
        "en": "Were you asked for a photocopy of a document today?",
    },
    Screen.RATING.value: {
        "th": "คุณพึงพอใจกับบริการวันนี้เพียงใด",
        "en": "How satisfied are you with today's service?",
    },
    Screen.REASON.value: {
        "th": "เรื่องใดที่เราควรปรับปรุง",
        "en": "What should we improve?",
    },
    # Short: the answers are sent when the confirm screen's few seconds are up.
    Screen.CONFIRM.value: {
        "th": "หากต้องการเปลี่ยน กดแก้ไขคำตอบ",
        "en": "To change your answers, press Change my answer.",
    },
    Screen.THANK_YOU.value: {
        "th": "ขอบคุณที่ให้ความเห็น",
        "en": "Thank you for your feedback.",
    },
    Screen.TAKE_CARD.value: {
        "th": "กรุณารับบัตรประชาชนคืน บัตรของคุณยังอยู่ในเครื่องอ่าน",
        "en": "Please take your ID card. It is still in the reader.",
    },
    FORGOTTEN_PROMPT: {
        "th": "มีบัตรประชาชนลืมไว้ในเครื่อง กรุณานำบัตรไปมอบให้เจ้าหน้าที่",
        "en": "An ID card was left in the machine. Please give it to a member of staff.",
    },
    Screen.OUT_OF_SERVICE.value: {
        "th": "ขออภัย เครื่องนี้งดให้บริการชั่วคราว กรุณาติดต่อเจ้าหน้าที่",
        "en": "Sorry, this machine is out of service. Please ask a staff member.",
    },
    CARD_REMINDER: {
        "th": "กรุณารับบัตรประชาชนคืน",
        "en": "Please take your ID card.",
    },
}


def prompt_id(screen, problem=None, card_forgotten=False):
    """Which prompt is spoken as ``screen`` appears: a card problem says which problem
    ("unreadable", the commonest, is the screen's own prompt); a forgotten card's take-card
    asks a passer-by."""
    if card_forgotten and Screen(screen) is Screen.TAKE_CARD:
        return FORGOTTEN_PROMPT
    key = f"{Screen(screen).value}-{problem}"
    return key if key in PROMPTS else Screen(screen).value


def prompt(key, language):
    """The words of prompt ``key`` (a :func:`prompt_id` or :data:`CARD_REMINDER`)."""
    return PROMPTS[key][language]
