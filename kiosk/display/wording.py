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
    Screen.CARD_PROBLEM: {
        "th": ("ขออภัย ใช้บัตรนี้ไม่ได้", ""),
        "en": ("Sorry, this card cannot be used", ""),
    },
    Screen.ALREADY_RATED: {
        "th": ("วันนี้คุณประเมินแล้ว", "ขอบคุณที่ให้ความเห็น เราเก็บหนึ่งความเห็นต่อการมารับบริการหนึ่งครั้ง"),
        "en": ("You have already rated today", "Thank you. We count one rating per visit."),
    },
    Screen.CHOOSE_SERVICE: {
        "th": ("วันนี้คุณมารับบริการใด", ""),
        "en": ("Which service did you use today?", ""),
    },
    Screen.COPY_CHECK: {
        "th": ("วันนี้เจ้าหน้าที่ขอสำเนาเอกสารจากคุณหรือไม่", ""),
        "en": ("Were you asked for a photocopy today?", ""),
    },
    Screen.RATING: {
        "th": ("คุณพึงพอใจกับบริการวันนี้เพียงใด", ""),
        "en": ("How satisfied are you with today's service?", ""),
    },
    Screen.REASON: {
        "th": ("เรื่องใดที่เราควรปรับปรุง", ""),
        "en": ("What should we improve?", ""),
    },
    Screen.THANK_YOU: {
        "th": ("ขอบคุณที่ให้ความเห็น", "สแกนเพื่อใช้บริการออนไลน์"),
        "en": ("Thank you for your feedback", "Scan for online services"),
    },
    Screen.TAKE_CARD: {
        "th": ("กรุณารับบัตรประชาชนคืน", "บัตรของคุณยังอยู่ในเครื่องอ่าน"),
        "en": ("Please take your ID card", "Your card is still in the reader"),
    },
    Screen.OUT_OF_SERVICE: {
        "th": ("ขออภัย งดให้บริการชั่วคราว", "กรุณาติดต่อเจ้าหน้าที่"),
        "en": ("Sorry, temporarily out of service", "Please ask a staff member"),
    },
}

# Accurate, not reassuring: a keyed hash of the card is kept for the repeat window, so the
# notice promises what is true (no name or ID number is kept), not "no personal data".
PRIVACY = {
    "th": "อ่านบัตรเพื่อนับความเห็นครั้งละหนึ่งเท่านั้น ไม่เก็บชื่อหรือเลขบัตร",
    "en": "The card only counts one rating per visit; your name and ID number are not kept.",
}

#: Shown on the card-problem screen, one per :data:`kiosk.flow.CARD_PROBLEMS` value.
CARD_PROBLEMS = {
    "unreadable": {
        "th": "อ่านข้อมูลบัตรไม่ได้ กรุณาเช็ดหน้าสัมผัสชิปให้สะอาดแล้วเสียบใหม่",
        "en": "The card could not be read. Wipe the gold chip clean and insert it again.",
    },
    "not_thai_id": {
        "th": "บัตรนี้ไม่ใช่บัตรประจำตัวประชาชน กรุณาใช้บัตรประชาชนของคุณ",
        "en": "This is not a Thai ID card. Please use your national ID card.",
    },
    "timeout": {
        "th": "บัตรตอบสนองช้าเกินไป กรุณาดึงบัตรออกแล้วเสียบใหม่อีกครั้ง",
        "en": "The card took too long to answer. Take it out and insert it again.",
    },
    "removed": {
        "th": "บัตรถูกดึงออกก่อนอ่านเสร็จ กรุณาเสียบค้างไว้จนกว่าจะอ่านเสร็จ",
        "en": "The card was taken out too early. Leave it in until reading is finished.",
    },
    "no_reader": {
        "th": "เครื่องอ่านบัตรไม่พร้อมใช้งาน กรุณาแจ้งเจ้าหน้าที่",
        "en": "The card reader is not working. Please tell a staff member.",
    },
}

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
    3: {"th": "เฉย ๆ", "en": "Neutral"},
    4: {"th": "พอใจ", "en": "Satisfied"},
    5: {"th": "พอใจมาก", "en": "Very satisfied"},
}

REASONS = {
    "waiting_time": {"th": "รอนาน", "en": "Waiting time"},
    "staff": {"th": "การบริการของเจ้าหน้าที่", "en": "Staff"},
    "copies_requested": {"th": "ถูกขอสำเนาเอกสาร", "en": "Copies requested"},
    "unclear_process": {"th": "ขั้นตอนไม่ชัดเจน", "en": "Unclear process"},
    "other": {"th": "เรื่องอื่น ๆ", "en": "Other"},
}

#: The no-copy status of a service, as agencies report it in the config.
NO_COPY = {
    "cancelled": {"th": "ไม่ต้องใช้สำเนาแล้ว", "en": "No copy needed"},
    "in_progress": {"th": "กำลังยกเลิกสำเนา", "en": "Copy removal in progress"},
    "not_yet": {"th": "ยังต้องใช้สำเนา", "en": "Copy still required"},
}

BUTTONS = {
    # The language button is labelled in the language it switches to.
    "language": {"th": "English", "en": "ภาษาไทย"},
    "ok": {"th": "ตกลง", "en": "OK"},
    "done": {"th": "เสร็จสิ้น", "en": "Done"},
    "skip": {"th": "ข้าม", "en": "Skip"},
    "without_card": {"th": "ประเมินโดยไม่ใช้บัตร", "en": "Rate without a card"},
    "more": {"th": "บริการอื่น ๆ", "en": "More services"},
}

TECHNICIAN = {"th": "สำหรับช่าง: {reason}", "en": "For the technician: {reason}"}


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
    "card_problem-timeout": {
        "th": "อ่านบัตรไม่สำเร็จ ดึงบัตรออก แล้วเสียบบัตรใหม่",
        "en": "We could not read your card. Take the card out and insert it again.",
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
    Screen.OUT_OF_SERVICE.value: {
        "th": "ขออภัย เครื่องนี้งดให้บริการชั่วคราว กรุณาติดต่อเจ้าหน้าที่",
        "en": "Sorry, this machine is out of service. Please ask a staff member.",
    },
    CARD_REMINDER: {
        "th": "กรุณารับบัตรประชาชนคืน",
        "en": "Please take your ID card.",
    },
}


def prompt_id(screen, problem=None):
    """Which prompt is spoken as ``screen`` appears: a card problem says which problem
    ("unreadable", the commonest, is the screen's own prompt)."""
    key = f"{Screen(screen).value}-{problem}"
    return key if key in PROMPTS else Screen(screen).value


def prompt(key, language):
    """The words of prompt ``key`` (a :func:`prompt_id` or :data:`CARD_REMINDER`)."""
    return PROMPTS[key][language]
