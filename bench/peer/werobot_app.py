"""The Python peer: WeRoBot (PyPI) in safe mode with the same demo credentials as dangjian's dev
mode, answering the same keywords with a text reply. Served by gunicorn (see run.sh):

    gunicorn -w 2 -k gevent -b 127.0.0.1:18092 werobot_app:app      # its fastest setup
    gunicorn -w 2 -b 127.0.0.1:18092 werobot_app:app                 # stock (sync workers)
"""
import werobot

robot = werobot.WeRoBot(
    token="dangjiandemotoken",
    encoding_aes_key="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    app_id="wxdemo0000000000",
)
# WeRoBot keeps no session by default when this is off; dangjian keeps none for a keyword reply.
robot.config["SESSION_STORAGE"] = False

REPLIES = {
    "帮助": "回复 投稿 / 留言 / 党费 了解更多。",
    "党费": "党费按月缴纳，可在小程序中查看和支付。",
    "联系方式": "党委办公室：010-12345678",
}


@robot.text
def keyword(message):
    return REPLIES.get(message.content.strip(), "您好，回复 帮助 查看可用的关键词。")


app = robot.wsgi
